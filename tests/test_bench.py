"""mbtrain bench: floor arithmetic, arms checked against the reference, CSV, interruption."""
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from mbtrain import Network
from mbtrain.bench import arms as arms_module
from mbtrain.bench.arms import ARMS, BackendArm, BackendRunner, get_arm
from mbtrain.bench.floor import Floor, epoch_bytes, epoch_flops
from mbtrain.bench.results import COLUMNS
from mbtrain.bench.throughput import CHECK_TOLERANCE, bench, update_error
from mbtrain.optim import SGD
from mbtrain.synthetic import make_blobs

SIZES = [64, 8, 10]
BENCH_REQUIRED = ["arm", "batch_size", "dtype", "repeat", "epoch_seconds", "examples_per_second", "compile_seconds"]


def small_data(rows=200):
    return make_blobs(n_samples=rows, n_features=SIZES[0], n_classes=SIZES[-1], dtype="float64", seed=3)


def run_small(out, arms=("loop", "numpy", "numba"), batch_sizes=(1, 50), repeats=2, rows=200, **kwargs):
    X, y = small_data(rows)
    return bench(X, y, SIZES, out=out, arms=arms, batch_sizes=batch_sizes, dtypes=("float32",), repeats=repeats,
                 quick=True, progress=False, dataset="synthetic", **kwargs)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return run_small(tmp_path_factory.mktemp("bench"))


# -- floor -----------------------------------------------------------------------------


def test_epoch_flops_of_the_book_network_on_60000_rows():
    # forward 2*60000*(784*30 + 30*10), weight gradients the same, hidden deltas 2*60000*(30*10)
    flops = epoch_flops([784, 30, 10], 60000)
    assert flops == 2 * 60000 * 23820 * 2 + 2 * 60000 * 300
    assert flops == pytest.approx(5.75e9, rel=1e-3)


def test_epoch_bytes_reads_the_inputs_once():
    assert epoch_bytes([784, 30, 10], 60000, "float32") == 60000 * 784 * 4
    assert epoch_bytes([784, 30, 10], 60000, "float64") == 60000 * 784 * 8


def test_floor_is_the_larger_of_compute_and_memory_time():
    floor = Floor({"float32": 1e11, "float64": 5e10}, bandwidth_bytes_per_second=1e10)
    f32 = floor.epoch_floor([784, 30, 10], 60000, "float32")
    assert f32["compute_floor_seconds"] == pytest.approx(5.7528e9 / 1e11)
    assert f32["memory_floor_seconds"] == pytest.approx(60000 * 784 * 4 / 1e10)
    assert f32["floor_bound"] == "compute" and f32["floor_seconds"] == f32["compute_floor_seconds"]
    slow_memory = Floor({"float32": 1e13}, bandwidth_bytes_per_second=1e9)
    assert slow_memory.epoch_floor([784, 30, 10], 60000, "float32")["floor_bound"] == "memory"


# -- arms ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["loop", "numpy", "numba", "torch", "sklearn"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_arm_agrees_with_the_reference(name, dtype):
    arm = get_arm(name)
    net = Network(SIZES, cost="cross_entropy", dtype=dtype, seed=1)
    reason = arm.unavailable_reason(net)
    if reason:
        pytest.skip(reason)
    X, y = small_data(64)
    Y = np.eye(SIZES[-1], dtype=dtype)[y]
    assert update_error(arm, net, X.astype(dtype), Y, eta=0.5, lmbda=2.0, n=64) <= CHECK_TOLERANCE[dtype]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")
def test_torch_epoch_matches_numpy_epoch_over_several_batches():
    net = Network(SIZES, cost="quadratic", dtype="float64", seed=2)
    X, y = small_data(60)
    Y = np.eye(SIZES[-1])[y]
    order = np.random.default_rng(0).permutation(60)
    results = []
    for name in ("numpy", "torch"):
        runner = get_arm(name).runner(net, X, Y, SGD())
        runner.epoch(order, 7, 3.0, 1.0, 60)  # short last batch of 4 rows
        results.append(runner.params())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-10, atol=1e-12)


def test_runner_reset_restores_the_initial_weights():
    net = Network(SIZES, dtype="float64", seed=0)
    X, y = small_data(20)
    runner = get_arm("numpy").runner(net, X, np.eye(10)[y], SGD())
    runner.epoch(np.arange(20), 5, 3.0, 0.0, 20)
    assert not np.array_equal(runner.params(), net.params)
    runner.reset()
    np.testing.assert_array_equal(runner.params(), net.params)


# -- the run ---------------------------------------------------------------------------


def test_csv_has_the_schema_and_one_row_per_measurement(small_run):
    results = pd.read_csv(small_run.out / "results.csv")
    assert list(results.columns) == COLUMNS
    bench_rows = results[results["kind"] == "bench"]
    assert set(BENCH_REQUIRED) <= set(results.columns)
    assert len(bench_rows) == 3 * 2 * 2  # arms x batch sizes x repeats
    assert bench_rows[BENCH_REQUIRED].drop(columns="compile_seconds").notna().all().all()
    assert (bench_rows["epoch_seconds"] > 0).all()
    assert sorted(bench_rows["repeat"].unique()) == [0, 1]
    assert len(results[results["kind"] == "check"]) == 3
    assert (results.loc[results["kind"] == "check", "status"] == "ok").all()
    floor = results[results["kind"] == "floor"]
    assert len(floor) == 1 and floor["floor_seconds"].iloc[0] > 0
    assert small_run.interrupted is False


def test_machine_json_states_threads_floor_and_command(small_run):
    machine = json.loads((small_run.out / "machine.json").read_text())
    assert machine["cpu_model"] and machine["available_cores"] >= 1
    assert machine["versions"]["numpy"] and machine["versions"]["numba"]
    assert machine["threads"]["numba"] >= 1 and machine["threads"]["blas"]
    assert machine["floor"]["gemm_flops_per_second"]["float32"] > 0
    assert "command" in machine


def test_report_and_plots_exist_and_are_not_empty(small_run):
    for name in ("report.md", "bench_throughput.png", "bench_speedup.png"):
        assert (small_run.out / name).stat().st_size > 0, name
    text = (small_run.out / "report.md").read_text()
    assert "## Throughput" in text and "compute-bound" in text or "memory-bound" in text
    assert "speedup over loop" in text


class ScaledRunner(BackendRunner):
    """A deliberately wrong arm: its steps are 1 % too long."""

    def epoch(self, order, batch_size, eta, lmbda, n):
        super().epoch(order, batch_size, eta * 1.01, lmbda, n)


class WrongArm(BackendArm):
    def runner(self, net, X, Y, optimizer):
        return ScaledRunner(self.backend, net, X, Y, optimizer)


def test_a_wrong_arm_is_reported_and_not_timed(tmp_path, monkeypatch):
    monkeypatch.setitem(ARMS, "wrong", WrongArm("wrong", description="numpy with eta off by 1 %", backend="numpy"))
    result = run_small(tmp_path, arms=("numpy", "wrong"), repeats=1)
    checks = result.results[result.results["kind"] == "check"].set_index("arm")
    assert checks.loc["wrong", "status"] == "wrong"
    assert checks.loc["wrong", "check_error"] > 1e-3
    assert checks.loc["numpy", "status"] == "ok"
    timed = result.results[result.results["kind"] == "bench"]
    assert set(timed["arm"]) == {"numpy"}
    assert "wrong (float32) is WRONG" in (tmp_path / "report.md").read_text()


def test_an_unavailable_arm_is_reported_and_skipped(tmp_path, monkeypatch):
    class Missing(BackendArm):
        def unavailable_reason(self, net):
            return "libmissing is not installed"

    monkeypatch.setitem(ARMS, "missing", Missing("missing", kind="peer"))
    result = run_small(tmp_path, arms=("numpy", "missing"), repeats=1, batch_sizes=(50,))
    checks = result.results[result.results["kind"] == "check"].set_index("arm")
    assert checks.loc["missing", "status"] == "unavailable"
    assert set(result.results.loc[result.results["kind"] == "bench", "arm"]) == {"numpy"}
    assert "libmissing is not installed" in (tmp_path / "report.md").read_text()


def test_interruption_keeps_what_was_measured_and_writes_the_report(tmp_path):
    timed = []

    def interrupt_after_three(row):
        if row["kind"] == "bench":
            timed.append(row)
            if len(timed) == 3:
                raise KeyboardInterrupt

    result = run_small(tmp_path, on_row=interrupt_after_three)
    assert result.interrupted
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert len(on_disk[on_disk["kind"] == "bench"]) == 3
    assert json.loads((tmp_path / "machine.json").read_text())["interrupted"] is True
    text = (tmp_path / "report.md").read_text()
    assert "Interrupted" in text and "## Throughput" in text


def test_slow_arms_are_timed_on_a_subset_and_scaled(tmp_path):
    result = run_small(tmp_path, arms=("loop",), batch_sizes=(1,), repeats=1, rows=1000, max_epoch_seconds=1e-4)
    row = result.results[result.results["kind"] == "bench"].iloc[0]
    assert row["rows_timed"] < row["rows"] == 1000
    assert "rows timed" in (tmp_path / "report.md").read_text()


def test_unknown_arm_is_an_error_naming_the_arm():
    with pytest.raises(ValueError, match="arms: unknown arm 'tensorflow'"):
        arms_module.get_arm("tensorflow")
