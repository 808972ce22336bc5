"""benchmarks/speed_targets.py: a smoke run on digits writes every target row with its ratio (no timing asserted),
the ratios are worked out as the issue states them, and its plain numpy arm trains what the reference trains."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import benchmark_script
from mbtrain import Network
from mbtrain.bench.steal import cpu_times
from mbtrain.bench.throughput import update_error

TARGETS_PER_RUN = ["batch 10: numba / one-thread floor", "batch 100: numba / floor", "batch 1000: numba / floor",
                   "batch 1: fastest other arm / numba", "batch 10: fastest other arm / numba",
                   "batch 100: fastest other arm / numba", "batch 1000: fastest other arm / numba",
                   "batch 1: loop / numba"]


@pytest.fixture(scope="module")
def speed_targets():
    return benchmark_script("speed_targets")


@pytest.fixture(scope="module")
def quick_run(speed_targets, tmp_path_factory):
    out = tmp_path_factory.mktemp("speed_targets")
    assert speed_targets.main(["--quick", "--threads", "1,2", "--epochs", "1", "--out", str(out)]) == 0
    return out


def test_the_quick_run_has_every_target_row_with_its_ratio(quick_run):
    targets = pd.read_csv(quick_run / "targets.csv")
    assert list(targets.columns) == ["network", "threads", "target", "batch_size", "measured", "fastest_epochs",
                                     "threshold", "met", "against"]
    assert (targets["fastest_epochs"].notna() == targets["measured"].notna()).all()
    assert sorted(targets["network"].unique()) == ["[64,100,10] cross-entropy", "[64,30,10] quadratic"]
    for (network, threads), rows in targets.groupby(["network", "threads"]):
        assert list(rows["target"]) == TARGETS_PER_RUN, (network, threads)
    assert sorted(targets["threads"].unique()) == [1, 2]
    # numpy and the plain numpy loop always run, so every ratio is measured, and says whether it is met
    assert targets["measured"].notna().all() and (targets["measured"] > 0).all()
    assert set(targets["met"]) <= {"met", "not met"}
    assert set(targets["threshold"]) == {"<= 2", "<= 1.6", ">= 1.2", ">= 25"}


def test_the_quick_run_records_the_arms_floors_and_machine(quick_run):
    epochs = pd.read_csv(quick_run / "epochs.csv")
    timed = epochs[epochs["status"] == "ok"]
    for arm in ("numba", "numpy", "numpy_plain"):
        assert sorted(timed.loc[timed["arm"] == arm, "batch_size"].astype(int).unique()) == [1, 10, 100, 1000]
    assert set(timed.loc[timed["arm"] == "loop", "batch_size"].astype(int)) == {1}
    assert set(epochs.loc[epochs["arm"] == "torch", "status"]) <= {"ok", "unavailable"}
    floors = pd.read_csv(quick_run / "floors.csv")
    assert sorted(floors["threads"].unique()) == [1, 2]
    assert (floors["probe_gflops"] > 0).all() and (floors["gemm_gflops"] > 0).all()
    assert set(floors["compute_rate_source"]) <= {"probe", "gemm"}
    machine = json.loads((quick_run / "machine.json").read_text())
    assert {"cpu_model", "isa", "numba_target", "blas", "environment", "floor"} <= set(machine)
    report = (quick_run / "report.md").read_text()
    for heading in ("## Machine", "## Targets", "## Floors", "## Seconds per epoch"):
        assert heading in report
    assert f"vector ISA **{machine['isa']}**" in report and "BLAS kernel:" in report
    # the hypervisor's steal, per timing and per floor, where /proc/stat has it
    assert "steal_share" in timed and "steal_share" in floors
    assert "Hypervisor steal (`/proc/stat`)" in report
    if cpu_times() is not None:
        for shares in (timed["steal_share"], floors["steal_share"]):  # NaN: no clock tick passed in a short one
            assert (shares.between(0, 1) | shares.isna()).all() and shares.notna().any()


def test_the_report_warns_when_the_hypervisor_took_much_of_the_cpu(speed_targets):
    epochs = pd.DataFrame({"steal_share": [0.01, 0.02, float("nan")]})
    floors = pd.DataFrame({"steal_share": [0.0, 0.0]})
    quiet = speed_targets.steal_lines(epochs, floors)
    assert quiet == ["- Hypervisor steal (`/proc/stat`) during the timings: median 0.5%, highest 2.0% "
                     "(per measurement in the `steal_share` columns)"]
    loud = speed_targets.steal_lines(epochs.assign(steal_share=[0.01, 0.2, 0.03]), floors)
    assert "highest 20.0%" in loud[0] and loud[1].startswith("- **Warning: The hypervisor took up to 20%")
    unmeasured = speed_targets.steal_lines(pd.DataFrame({"steal_share": [float("nan")]}), pd.DataFrame())
    assert unmeasured == ["- Hypervisor steal (`/proc/stat`): not measured on this system"]


def test_the_ratios_are_those_the_issue_states(speed_targets):
    net = "[784,30,10] quadratic"
    floors = pd.DataFrame({"network": [net, net], "threads": [1, 2], "floor_seconds": [0.05, 0.025]})
    seconds = {("numba", 1): 0.1, ("numba", 10): 0.09, ("numba", 100): 0.04, ("numba", 1000): 0.05,
               ("numpy", 1): 3.0, ("numpy", 10): 0.3, ("numpy", 100): 0.06, ("numpy", 1000): 0.055,
               ("numpy_plain", 1): 2.0, ("numpy_plain", 10): 0.5, ("numpy_plain", 100): 0.1,
               ("numpy_plain", 1000): 0.05, ("loop", 1): 2.4}
    epochs = pd.DataFrame([dict(network=net, threads=2, arm=a, batch_size=b, status="ok", median_seconds=s)
                           for (a, b), s in seconds.items()]
                          + [dict(network=net, threads=2, arm="torch", status="unavailable")])
    rows = speed_targets.evaluate(epochs, floors).set_index("target")
    assert rows.loc["batch 10: numba / one-thread floor", "measured"] == pytest.approx(0.09 / 0.05)  # 1.8: met
    assert rows.loc["batch 10: numba / one-thread floor", "met"] == "met"
    assert rows.loc["batch 100: numba / floor", "measured"] == pytest.approx(0.04 / 0.025)  # 1.6: met, just
    assert rows.loc["batch 100: numba / floor", "met"] == "met"
    assert rows.loc["batch 1000: numba / floor", "measured"] == pytest.approx(2.0)
    assert rows.loc["batch 1000: numba / floor", "met"] == "not met"
    assert rows.loc["batch 1: fastest other arm / numba", "measured"] == pytest.approx(20.0)
    assert rows.loc["batch 1: fastest other arm / numba", "against"].startswith("numpy_plain (fastest of numpy, ")
    assert rows.loc["batch 1000: fastest other arm / numba", "measured"] == pytest.approx(1.0)  # a tie: not met
    assert rows.loc["batch 1000: fastest other arm / numba", "met"] == "not met"
    assert rows.loc["batch 1: loop / numba", "measured"] == pytest.approx(24.0)
    assert rows.loc["batch 1: loop / numba", "met"] == "not met"


def test_the_fastest_epochs_give_the_same_ratios_beside_the_medians(speed_targets):
    """Met or not is the medians'; ``fastest_epochs`` takes each arm's fastest epoch (a quiet phase of the machine)."""
    net = "[784,30,10] quadratic"
    floors = pd.DataFrame({"network": [net], "threads": [1], "floor_seconds": [0.02]})
    epochs = pd.DataFrame([dict(network=net, threads=1, arm="numba", batch_size=b, status="ok",
                                median_seconds=0.035, min_seconds=0.03) for b in (1, 10, 100, 1000)]
                          + [dict(network=net, threads=1, arm="numpy", batch_size=b, status="ok",
                                  median_seconds=0.05, min_seconds=0.03) for b in (1, 10, 100, 1000)])
    rows = speed_targets.evaluate(epochs, floors).set_index("target")
    large = rows.loc["batch 100: numba / floor"]
    assert large["measured"] == pytest.approx(1.75) and large["met"] == "not met"
    assert large["fastest_epochs"] == pytest.approx(1.5)  # shown, not deciding
    lead = rows.loc["batch 10: fastest other arm / numba"]
    assert lead["measured"] == pytest.approx(0.05 / 0.035) and lead["fastest_epochs"] == pytest.approx(1.0)
    assert "fastest_epochs" not in speed_targets.evaluate(epochs.drop(columns="min_seconds"), floors)


def test_a_missing_arm_is_not_measured_not_met(speed_targets):
    net = "[64,30,10] quadratic"
    floors = pd.DataFrame({"network": [net], "threads": [1], "floor_seconds": [0.01]})
    epochs = pd.DataFrame([dict(network=net, threads=1, arm="numba", batch_size=b, status="ok", median_seconds=0.1)
                           for b in (1, 10, 100, 1000)])
    targets = speed_targets.evaluate(epochs, floors).set_index("target")
    assert targets.loc["batch 1: loop / numba", "met"] == "not measured"
    assert math.isnan(targets.loc["batch 10: fastest other arm / numba", "measured"])


@pytest.mark.parametrize("cost", ["quadratic", "cross_entropy"])
def test_the_plain_numpy_arm_takes_the_reference_step(speed_targets, cost):
    net = Network([6, 5, 3], cost=cost, dtype="float64", seed=3)
    rng = np.random.default_rng(0)
    X = rng.random((40, 6))
    Y = np.eye(3)[rng.integers(0, 3, 40)]
    assert update_error(speed_targets.PlainNumpyArm(), net, X, Y, eta=0.5, lmbda=2.0, n=40) < 1e-12


def test_bad_threads_are_refused_naming_the_option(speed_targets, capsys):
    with pytest.raises(SystemExit) as info:
        speed_targets.main(["--quick", "--threads", "0,x"])
    assert info.value.code == 2 and "--threads" in capsys.readouterr().err


def test_the_floor_kept_reads_at_the_higher_bandwidth_of_the_two(speed_targets):
    """The bandwidth is kept apart from the peak: the faster-computing measurement may be the slower-reading one."""
    from mbtrain.bench.floor import Floor

    fast_compute = Floor({"float32": 2e11}, bandwidth_bytes_per_second=2e10, probe_flops_per_second={"float32": 4e11},
                         numpy_bandwidth_bytes_per_second=2e10, probe_bandwidth_bytes_per_second=1e10)
    fast_read = Floor({"float32": 2e11}, bandwidth_bytes_per_second=4e10, probe_flops_per_second={"float32": 3e11},
                      numpy_bandwidth_bytes_per_second=2e10, probe_bandwidth_bytes_per_second=4e10)
    for kept in (speed_targets.faster_floor(fast_compute, fast_read),
                 speed_targets.faster_floor(fast_read, fast_compute)):
        assert kept.compute_rate("float32") == (4e11, "probe")
        assert kept.bandwidth_bytes_per_second == 4e10 and kept.bandwidth_source == "probe"
    assert fast_compute.bandwidth_source == "numpy"  # the inputs are not changed


def test_the_floor_kept_is_the_measurement_with_the_higher_peak(speed_targets):
    """A neighbour's burst lowers a measured peak: of two floors the stricter (higher rate) one is kept, and an
    epoch row's ratio is recomputed against it."""
    from types import SimpleNamespace

    from mbtrain.bench.floor import Floor

    disturbed = Floor({"float32": 2e11}, bandwidth_bytes_per_second=1e12, probe_flops_per_second={"float32": 2.4e11})
    quiet = Floor({"float32": 2e11}, bandwidth_bytes_per_second=1e12, probe_flops_per_second={"float32": 4.8e11})
    for kept in (speed_targets.faster_floor(disturbed, quiet), speed_targets.faster_floor(quiet, disturbed)):
        assert kept == quiet  # equal bandwidths: the quiet measurement, field for field
    data = SimpleNamespace(n_features=784, n_classes=10)
    label, sizes = speed_targets.network_sizes(speed_targets.NETWORKS[0], data)
    row = dict(network=label, rows=50_000, status="ok", median_seconds=0.05, floor_seconds=1.0, times_floor=0.05)
    updated = speed_targets.with_floor(row, quiet, data)
    expected = quiet.epoch_floor(sizes, 50_000, "float32")["floor_seconds"]
    assert updated["floor_seconds"] == expected and updated["times_floor"] == pytest.approx(0.05 / expected)
    assert expected < disturbed.epoch_floor(sizes, 50_000, "float32")["floor_seconds"]
    wrong = dict(row, status="wrong")
    assert speed_targets.with_floor(wrong, quiet, data) is wrong


def test_the_quick_run_records_the_threads_l1_scaling(quick_run):
    machine = json.loads((quick_run / "machine.json").read_text())
    assert set(machine["core_scaling"]) == {"2"} and machine["core_scaling"]["2"] > 0
    assert machine["core_probe_compile_seconds"] >= 0
    assert "The threads' L1 work against one thread's" in (quick_run / "report.md").read_text()


def test_the_report_warns_when_the_threads_share_cores(speed_targets):
    info = dict(cpu_model="cpu", available_cores=2, isa="AVX-512", isa_source="flags",
                numba_target=dict(cpu="x", isa="AVX-512"), blas=[], environment={})
    scaled = speed_targets.machine_lines(dict(info, core_scaling={"2": 1.95}))
    assert "- The threads' L1 work against one thread's" in "\n".join(scaled) and "2 threads 1.95x" in scaled[-1]
    assert not any("share cores" in line for line in scaled)
    shared = speed_targets.machine_lines(dict(info, core_scaling={"2": 1.1}))
    assert shared[-1].startswith("- **Warning: the threads share cores.** 2 threads did 1.10x")
    assert not any("L1 work" in line for line in speed_targets.machine_lines(info))
