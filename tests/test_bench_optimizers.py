"""bench and sweep with momentum, Nesterov and Adam: every arm runs the optimizer, the sweep sweeps them.

The bench's arms must train the optimizer they are given (the check runs the
loop reference with the same rule, over enough steps for the state to count);
the sweep has the optimizer as one more axis, each with its own eta; the report
sets the optimizers side by side and says whether the run agrees with Zhang et
al. (2019) as far as its numbers allow. Folders written before the optimizer
column still read as plain SGD.
"""
import csv
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from mbtrain import Network
from mbtrain.bench.arms import ARMS, BackendArm, BackendRunner, get_arm
from mbtrain.bench.data import BenchData
from mbtrain.bench.machine import read_machine
from mbtrain.bench.plots import OVERLAY_PLOT
from mbtrain.bench.report import write_report
from mbtrain.bench.results import COLUMNS, SGD_LABEL, ResultsWriter, read_results
from mbtrain.bench.summaries import (best_per_batch_size, sweep_summary, verdicts_by_optimizer,
                                     zhang_comparison)
from mbtrain.bench.sweep import sweep
from mbtrain.bench.throughput import bench, check_tolerance, update_error
from mbtrain.cli import main
from mbtrain.optim import SGD, Adam, Momentum, get_optimizer, label
from mbtrain.synthetic import make_blobs

SIZES = [64, 8, 10]
ADAM = label(Adam().describe())
MOMENTUM = label(Momentum().describe())
HAS_TORCH = importlib.util.find_spec("torch") is not None


def small_data(rows=200):
    return make_blobs(n_samples=rows, n_features=SIZES[0], n_classes=SIZES[-1], dtype="float64", seed=3)


def blobs(rows=600):
    X, y = make_blobs(n_samples=rows + 200, n_features=64, n_classes=10, spread=1.2, dtype="float64", seed=0)
    return BenchData("synthetic", X[:rows], y[:rows], X[rows:], y[rows:], "blobs")


def run_bench(out, optimizer="adam", arms=("loop", "numpy", "numba"), **kwargs):
    X, y = small_data()
    options = dict(arms=arms, batch_sizes=(1, 50), dtypes=("float32",), repeats=1, quick=True, progress=False,
                   dataset="synthetic", eta=0.01 if optimizer == "adam" else 0.5, optimizer=optimizer)
    return bench(X, y, SIZES, out=out, **{**options, **kwargs})


SWEEP = dict(batch_sizes=[5, 100], seeds=2, max_epochs=3, target=0.6, progress=False, cost="cross_entropy",
             optimizers=["sgd", "adam"], eta=[3.0, 0.01])


def run_sweep(out, **kwargs):
    return sweep(blobs(), SIZES, out=out, **{**SWEEP, **kwargs})


@pytest.fixture(scope="module")
def adam_bench(tmp_path_factory):
    return run_bench(tmp_path_factory.mktemp("adam-bench"))


@pytest.fixture(scope="module")
def two_optimizer_sweep(tmp_path_factory):
    return run_sweep(tmp_path_factory.mktemp("sweep"))


# -- bench: every arm runs the optimizer, checked against the loop running it -------------------------------------


def test_bench_adam_rows_name_adam_and_every_arm_passes_its_check(adam_bench):
    results = pd.read_csv(adam_bench.out / "results.csv")
    trained = results[results["kind"].isin(["check", "bench"])]
    assert set(trained["optimizer"]) == {ADAM}
    checks = results[results["kind"] == "check"].set_index("arm")
    assert list(checks.index) == ["loop", "numpy", "numba"]
    assert (checks["status"] == "ok").all()
    assert (checks["check_error"] <= checks["check_tolerance"]).all()
    assert (checks["steps"] == 3).all()  # the state of the first steps enters the last
    assert set(results.loc[results["kind"] == "bench", "arm"]) == {"loop", "numpy", "numba"}
    settings = json.loads((adam_bench.out / "machine.json").read_text())["settings"]
    assert settings["optimizer"] == Adam().describe()


def test_bench_adam_report_says_what_was_checked_and_timed(adam_bench):
    text = (adam_bench.out / "report.md").read_text()
    assert f"takes 3 steps of {ADAM} on mini-batches of 32 rows" in text
    assert f"timed epochs of {ADAM} after one warm-up" in text


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov", "adam"])
@pytest.mark.parametrize("name", ["loop", "numpy", "numba", "torch", "sklearn"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_arm_runs_every_optimizer_as_the_reference_does(name, optimizer, dtype):
    arm = get_arm(name)
    net = Network(SIZES, cost="cross_entropy", dtype=dtype, seed=1)
    reason = arm.unavailable_reason(net)
    if reason:
        pytest.skip(reason)
    X, y = small_data(128)
    Y = np.eye(SIZES[-1], dtype=dtype)[y]
    eta = 0.01 if optimizer == "adam" else 0.5
    error = update_error(arm, net, X.astype(dtype), Y, eta=eta, lmbda=2.0, n=128, optimizer=optimizer)
    assert error <= check_tolerance(dtype, optimizer)


def test_sklearn_adam_is_checked_against_its_own_eps_placement():
    # scikit-learn adds eps before the bias correction: against torch's Adam it is off by far more than the tolerance
    arm = get_arm("sklearn")
    if arm.unavailable_reason(Network(SIZES)):
        pytest.skip("scikit-learn is not installed")

    class AsTorch(type(arm)):
        def update_rule(self, optimizer):
            return optimizer

    net = Network(SIZES, cost="cross_entropy", dtype="float64", seed=1)
    X, y = small_data(128)
    Y = np.eye(10)[y]
    X = X * (np.arange(64) % 4 == 0)  # three inputs in four are 0: small gradients, where the placement matters
    mine = update_error(arm, net, X, Y, eta=0.001, lmbda=0.0, n=128, optimizer="adam")
    assert mine <= 1e-9
    assert update_error(AsTorch(), net, X, Y, eta=0.001, lmbda=0.0, n=128, optimizer="adam") > 1e-6


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
@pytest.mark.parametrize("optimizer", [Momentum(0.9), Momentum(0.8, nesterov=True), Adam(0.85, 0.99, 1e-7)])
def test_torch_epoch_equals_the_loop_epoch_for_each_optimizer(optimizer):
    net = Network(SIZES, cost="quadratic", dtype="float64", seed=2)
    X, y = small_data(60)
    Y = np.eye(SIZES[-1])[y]
    order = np.random.default_rng(0).permutation(60)
    eta = 0.01 if optimizer.name == "adam" else 0.5
    after = {}
    for name in ("loop", "torch"):
        runner = get_arm(name).runner(net, X, Y, optimizer)
        runner.epoch(order, 7, eta, 1.0, 60)  # 9 mini-batches, the last of 4 rows
        runner.epoch(order[::-1], 7, eta, 1.0, 60)  # the state carries over to a second epoch
        after[name] = runner.params()
    np.testing.assert_allclose(after["torch"], after["loop"], rtol=1e-10, atol=1e-12)
    assert not np.allclose(after["loop"], net.params)


def test_runner_reset_starts_a_fresh_state():
    net = Network(SIZES, dtype="float64", seed=0)
    X, y = small_data(40)
    runner = get_arm("numpy").runner(net, X, np.eye(10)[y], Adam())
    runner.epoch(np.arange(40), 5, 0.01, 0.0, 40)
    first = runner.params()
    runner.epoch(np.arange(40), 5, 0.01, 0.0, 40)
    assert runner.state.step == 16
    runner.reset()
    assert runner.state.step == 0
    runner.epoch(np.arange(40), 5, 0.01, 0.0, 40)
    np.testing.assert_array_equal(runner.params(), first)


def test_the_sgd_runner_is_the_backends_sgd_epoch_bit_for_bit():
    net = Network(SIZES, dtype="float32", seed=0)
    X, y = small_data(40)
    Y = np.eye(10, dtype=np.float32)[y]
    runner = get_arm("numba").runner(net, X, Y, SGD())
    runner.epoch(np.arange(40), 6, 0.5, 1.0, 40)
    assert runner.state is None
    direct = net.copy()
    get_arm("numba").backend.sgd_epoch(direct, X.astype(np.float32), Y, np.arange(40), 6, 0.5, 1.0, 40)
    np.testing.assert_array_equal(runner.params(), direct.params)


class SgdOnlyRunner(BackendRunner):
    """A deliberately wrong arm: it ignores the optimizer it is given and runs plain SGD."""

    def __init__(self, backend, net, X, Y, optimizer):
        super().__init__(backend, net, X, Y, SGD())


class SgdOnlyArm(BackendArm):
    def runner(self, net, X, Y, optimizer):
        return SgdOnlyRunner(self.backend, net, X, Y, optimizer)


def test_an_arm_that_ignores_the_optimizers_state_is_reported_wrong(tmp_path, monkeypatch):
    # heavy-ball momentum's first step from a zero velocity is SGD's: only the later steps tell them apart
    monkeypatch.setitem(ARMS, "sgd-only", SgdOnlyArm("sgd-only", description="numpy, always SGD", backend="numpy"))
    result = run_bench(tmp_path, optimizer="momentum", arms=("numpy", "sgd-only"), batch_sizes=(50,))
    checks = result.results[result.results["kind"] == "check"].set_index("arm")
    assert checks.loc["numpy", "status"] == "ok"
    assert checks.loc["sgd-only", "status"] == "wrong"
    assert set(result.results.loc[result.results["kind"] == "bench", "arm"]) == {"numpy"}


def test_bench_resumed_with_another_optimizer_is_refused(tmp_path):
    run_bench(tmp_path, optimizer="sgd", arms=("numpy",), batch_sizes=(50,))
    with pytest.raises(ValueError, match=r"cannot resume with different settings \(optimizer: was "
                                         r"\{'name': 'sgd'\}, now \{'name': 'momentum', 'mu': 0.9\}"):
        run_bench(tmp_path, optimizer="momentum", arms=("numpy",), batch_sizes=(50,), resume=True)


# -- sweep: the optimizer is one more axis ----------------------------------------------------------------------


def test_sweep_writes_rows_for_each_optimizer_with_its_own_eta(two_optimizer_sweep):
    results = read_results(two_optimizer_sweep.out)
    runs = results[results["kind"] == "sweep"]
    assert set(runs["optimizer"]) == {SGD_LABEL, ADAM}
    assert len(runs) == 2 * 2 * 2  # optimizers x batch sizes x seeds
    assert set(runs.loc[runs["optimizer"] == SGD_LABEL, "eta"]) == {3.0}
    assert set(runs.loc[runs["optimizer"] == ADAM, "eta"]) == {0.01}
    curves = results[results["kind"] == "curve"]
    assert set(curves["optimizer"]) == {SGD_LABEL, ADAM}
    noise = results[results["kind"] == "noise"]
    assert not noise.empty and set(noise["optimizer"]) == {SGD_LABEL}  # along the first optimizer's run only
    settings = read_machine(two_optimizer_sweep.out)["settings"]
    assert settings["optimizers"] == [SGD().describe(), Adam().describe()] and settings["eta"] == [3.0, 0.01]


def test_the_eta_policy_scales_each_optimizers_own_eta(tmp_path):
    result = run_sweep(tmp_path, batch_sizes=[5, 40], seeds=1, max_epochs=1, eta_policy="linear", ref_batch_size=10,
                       write_report=False)
    runs = result.results[result.results["kind"] == "sweep"]
    etas = runs.groupby("optimizer")["eta"].apply(sorted).to_dict()
    assert etas == {SGD_LABEL: [1.5, 12.0], ADAM: [0.005, 0.04]}


def test_adam_trains_differently_from_sgd_in_the_sweep(two_optimizer_sweep):
    results = read_results(two_optimizer_sweep.out)
    curves = results[(results["kind"] == "curve") & (results["seed"] == 0) & (results["batch_size"] == 5)]
    last = curves.groupby("optimizer")["val_loss"].last()
    assert last[SGD_LABEL] != last[ADAM]
    first = curves.groupby("optimizer")["val_loss"].first()  # the same initial weights
    assert first[SGD_LABEL] == first[ADAM]


def test_sweep_report_sets_the_optimizers_side_by_side(two_optimizer_sweep):
    out = two_optimizer_sweep.out
    text = (out / "report.md").read_text()
    assert "### Verdict: sgd" in text and "### Verdict: adam" in text
    side = text.split("### Optimizers side by side", 1)[1]
    header = next(line for line in side.splitlines() if line.startswith("| ") and "batch size" in line)
    for column in ("sgd s", "adam s", "sgd epochs", "adam epochs", "sgd steps", "adam steps"):
        assert f" {column} " in header
    assert "Zhang et al. (2019" in side
    assert f"]({OVERLAY_PLOT})" in side and (out / OVERLAY_PLOT).stat().st_size > 0
    # the sentence is the one zhang_comparison computes from these numbers
    summary = sweep_summary(read_results(out), read_machine(out))
    comparison = zhang_comparison(verdicts_by_optimizer(best_per_batch_size(summary)), summary["batch_size"])
    answer = comparison.set_index("optimizer").loc[ADAM, "answer"]
    line = next(line for line in side.splitlines() if line.startswith("- adam:"))
    assert answer in line


def test_sweep_resumed_with_another_optimizer_set_is_refused(tmp_path):
    run_sweep(tmp_path, batch_sizes=[100], seeds=1, max_epochs=1, write_report=False)
    with pytest.raises(ValueError, match="optimizers: was .*'sgd'.*'adam'.*, now .*'sgd'.*'momentum'"):
        run_sweep(tmp_path, batch_sizes=[100], seeds=1, max_epochs=1, optimizers=["sgd", "momentum"],
                  eta=[3.0, 0.3], resume=True)


def test_an_interrupted_two_optimizer_sweep_resumes_without_redoing_a_run(tmp_path):
    def stop_after_three(row, seen=[]):
        if row["kind"] == "sweep":
            seen.append(row)
            if len(seen) == 3:
                raise KeyboardInterrupt

    options = dict(max_epochs=1, write_report=False)
    assert run_sweep(tmp_path, on_row=stop_after_three, **options).interrupted
    recorded = []
    resumed = run_sweep(tmp_path, resume=True, on_row=recorded.append, **options).results
    assert len([r for r in recorded if r["kind"] == "sweep"]) == 8 - 3
    runs = resumed[resumed["kind"] == "sweep"]
    assert len(runs) == 8 and not runs.duplicated(["optimizer", "batch_size", "eta", "seed"]).any()


def test_parallel_workers_receive_the_optimizer(tmp_path):
    pytest.importorskip("joblib")
    options = dict(batch_sizes=[20], seeds=1, max_epochs=1, write_report=False, optimizers=["sgd", "nesterov"],
                   eta=[3.0, 0.3])
    serial = run_sweep(tmp_path / "serial", **options).results
    parallel = run_sweep(tmp_path / "parallel", jobs=2, **options).results
    keys = ["kind", "optimizer", "batch_size", "seed", "steps"]
    shown = ["val_loss", "val_accuracy", "train_loss"]
    a = serial[serial["kind"] == "curve"].sort_values(keys)[keys + shown].reset_index(drop=True)
    b = parallel[parallel["kind"] == "curve"].sort_values(keys)[keys + shown].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert set(b["optimizer"]) == {SGD_LABEL, label(get_optimizer("nesterov").describe())}


@pytest.mark.parametrize("optimizers, eta, message", [
    (["sgd", "adam"], 3.0, r"eta: 1 learning rate for 2 optimizers \(sgd, adam\); give one per optimizer"),
    (["sgd", "adam"], [3.0, 0.1, 0.2], "eta: 3 learning rates for 2 optimizers"),
    (["sgd", "sgd"], [3.0, 1.0], r"optimizers: sgd\(\) given more than once"),
    (["sgd", "adam"], [3.0, -1.0], "eta: every learning rate must be a finite number > 0"),
    (["rmsprop"], 3.0, "optimizer: unknown optimizer 'rmsprop'"),
])
def test_sweep_refuses_optimizers_and_etas_that_do_not_pair_up(tmp_path, optimizers, eta, message):
    with pytest.raises(ValueError, match=message):
        run_sweep(tmp_path / "never", optimizers=optimizers, eta=eta)
    assert not (tmp_path / "never").exists()


# -- the CLI --------------------------------------------------------------------------------------------------------


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--optimizers", "sgd,adam", "--eta", "3.0"], "--eta: 1 learning rate for 2 optimizers (sgd,adam); give one"),
    (["--optimizers", "sgd,adam"], "--eta: give the learning rate of each of --optimizers sgd,adam"),
    (["--optimizers", "adam", "--eta", "0.01,0.02"], "--eta: 2 learning rates for 1 optimizer (adam)"),
    (["--optimizers", "sgd,adam", "--eta", "3,0.01", "--momentum", "0.5"],
     "--momentum: only used by --optimizers momentum or nesterov, which sgd,adam does not include"),
])
def test_cli_sweep_eta_and_options_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert main(["sweep", "--quick", "--out", str(out), *argv]) == 2
    assert message in one_error_line(capsys)
    assert not out.exists()


def test_cli_bench_refuses_an_option_of_another_optimizer(tmp_path, capsys):
    assert main(["bench", "--quick", "--optimizer", "momentum", "--beta1", "0.5", "--out", str(tmp_path / "x")]) == 2
    assert "--beta1: only used by --optimizer adam" in one_error_line(capsys)


def test_cli_bench_and_sweep_pass_the_optimizer_and_its_hyperparameters(tmp_path, capsys):
    bench_out, sweep_out = tmp_path / "bench", tmp_path / "sweep"
    assert main(["bench", "--dataset", "synthetic", "--train-rows", "200", "--batch-sizes", "50", "--repeats", "1",
                 "--arms", "numpy", "--dtype", "float64", "--optimizer", "nesterov", "--momentum", "0.8",
                 "--eta", "0.5", "--no-progress", "--out", str(bench_out)]) == 0
    rows = read_results(bench_out)
    assert set(rows.loc[rows["kind"] == "bench", "optimizer"]) == {"nesterov(mu=0.8)"}
    assert main(["sweep", "--dataset", "synthetic", "--train-rows", "300", "--batch-sizes", "20", "--seeds", "1",
                 "--max-epochs", "1", "--optimizers", "momentum,adam", "--eta", "0.3,0.01", "--momentum", "0.5",
                 "--beta2", "0.99", "--no-progress", "--out", str(sweep_out)]) == 0
    runs = read_results(sweep_out).query("kind == 'sweep'")
    assert list(runs["optimizer"]) == ["momentum(mu=0.5)", "adam(beta1=0.9, beta2=0.99, eps=1e-08)"]
    assert list(runs["eta"]) == [0.3, 0.01]


# -- the report's Zhang et al. sentence, on results written by hand -----------------------------------------------

PROBLEM = dict(dataset="digits", sizes="64,30,10", cost="quadratic", rows=1437, dtype="float32", arm="numba",
               eta_policy="fixed", target=0.9, max_epochs=10, executor="serial", jobs=1)
OPTIMIZER_LABELS = {"sgd": SGD_LABEL, "momentum": MOMENTUM, "adam": ADAM}
ETAS = {"sgd": 3.0, "momentum": 0.3, "adam": 0.001}


def sweep_row(optimizer, batch_size, seed, examples):
    """One run that reached the target after ``examples`` examples (None: it did not)."""
    reached = examples is not None
    return dict(kind="sweep", **PROBLEM, optimizer=OPTIMIZER_LABELS[optimizer], eta=ETAS[optimizer],
                batch_size=batch_size, seed=seed, status="reached" if reached else "not reached", reached=reached,
                examples_to_target=examples, seconds_to_target=examples / 1e6 if reached else None,
                epochs_to_target=examples / 1437 if reached else None,
                steps_to_target=examples / batch_size if reached else None,
                best_val_accuracy=0.95 if reached else 0.8, final_train_loss=0.1, final_val_loss=0.12)


def rows_for(optimizer, examples_by_batch):
    """Two seeds per batch size: ``examples_by_batch`` maps a batch size to one value (both seeds) or a pair."""
    rows = []
    for b, examples in examples_by_batch.items():
        pair = examples if isinstance(examples, tuple) else (examples, examples)
        rows += [sweep_row(optimizer, b, seed, e) for seed, e in enumerate(pair)]
    return rows


def write_sweep(folder, rows, optimizers, batch_sizes=(10, 20, 50, 100)):
    folder.mkdir(parents=True, exist_ok=True)
    with ResultsWriter(folder / "results.csv") as writer:
        for row in rows:
            writer.write(**row)
    machine = {"run": "sweep", "dataset": "digits", "settings": {
        "sizes": [64, 30, 10], "cost": "quadratic", "dtype": "float32", "batch_sizes": list(batch_sizes),
        "target": 0.9, "max_epochs": 10, "eta_policy": "fixed", "seeds": 2,
        "optimizers": [get_optimizer(o).describe() for o in optimizers], "eta": [ETAS[o] for o in optimizers]},
        "execution": {"executor": "serial", "jobs": 1}}
    (folder / "machine.json").write_text(json.dumps(machine))
    return write_report(folder).read_text()


def zhang_section(text):
    return text.split("### Optimizers side by side", 1)[1]


# examples to target: SGD's minimum 1e5 at b=10 and 1.5e5 at b=20, 4e5 at b=50: it still scales up to 20
SGD_STOPS_AT_20 = {10: 1e5, 20: 1.5e5, 50: 4e5, 100: 1e6}


def test_zhang_agrees_when_adam_scales_beyond_sgd_clear_of_the_noise(tmp_path):
    rows = rows_for("sgd", SGD_STOPS_AT_20) + rows_for("adam", {10: 1e5, 20: 1.1e5, 50: 1.5e5, 100: 5e5})
    side = zhang_section(write_sweep(tmp_path, rows, ["sgd", "adam"]))
    assert "- adam: largest batch size that still scales 50, plain SGD's 20: **agrees**" in side
    assert "- This run: **agrees** (with eta not tuned per batch size" in side
    table = side.split("| optimizer", 1)[1]
    assert "| adam        | 0.001" in table and "| 50 " in table


def test_zhang_does_not_agree_when_adam_stops_scaling_first(tmp_path):
    rows = rows_for("sgd", SGD_STOPS_AT_20) + rows_for("adam", {10: 1e5, 20: 2.5e5, 50: 6e5, 100: 2e6})
    side = zhang_section(write_sweep(tmp_path, rows, ["sgd", "adam"]))
    assert "- adam: largest batch size that still scales 10, plain SGD's 20: **does not agree**" in side
    assert "- This run: **does not agree**" in side


def test_zhang_cannot_tell_when_the_seeds_straddle_the_limit(tmp_path):
    # adam's seeds at b=50 lie on both sides of 2x its minimum: its answer is 20 to 50, sgd's is 20
    rows = rows_for("sgd", SGD_STOPS_AT_20) + rows_for("adam", {10: 1e5, 20: 1.2e5, 50: (1.9e5, 2.3e5), 100: 6e5})
    side = zhang_section(write_sweep(tmp_path, rows, ["sgd", "adam"]))
    assert ("- adam: largest batch size that still scales 20 (20–50 within the noise), plain SGD's 20: cannot "
            "tell — the seed intervals of the two overlap.") in side
    assert "- This run: cannot tell within the noise" in side
    assert "**agrees**" not in side and "**does not agree**" not in side


def test_zhang_cannot_tell_when_sgd_still_scales_at_the_largest_batch_size(tmp_path):
    rows = rows_for("sgd", {10: 1e5, 20: 1.1e5, 50: 1.3e5, 100: 1.6e5}) + \
        rows_for("adam", {10: 1e5, 20: 1.1e5, 50: 1.3e5, 100: 1.5e5})
    side = zhang_section(write_sweep(tmp_path, rows, ["sgd", "adam"]))
    assert "cannot tell — plain SGD still scales at 100, the largest batch size measured" in side


def test_zhang_per_optimizer_when_they_differ_and_provisional_when_runs_are_missing(tmp_path):
    rows = rows_for("sgd", SGD_STOPS_AT_20) + rows_for("momentum", {10: 1e5, 20: 1.1e5, 50: 1.5e5, 100: 5e5}) + \
        rows_for("adam", {10: 1e5, 20: 2.5e5, 50: 6e5, 100: 2e6})
    side = zhang_section(write_sweep(tmp_path / "all", rows, ["sgd", "momentum", "adam"]))
    assert "- This run: agrees for momentum; does not agree for adam" in side
    partial = [r for r in rows if not (r["optimizer"] == ADAM and r["batch_size"] == 100)]
    text = write_sweep(tmp_path / "partial", partial, ["sgd", "momentum", "adam"])
    assert "adam: 1 of 4 batch sizes missing: 100 (no run finished)" in text.split("## What is missing", 1)[1]
    side = zhang_section(text)
    assert side.startswith(" (provisional: 1 of 12 optimizer and batch size pairs missing)")
    assert "- This run (provisional): agrees for momentum" in side and "**" not in side.split("Zhang et al.", 1)[1]


def test_zhang_needs_plain_sgd_and_an_optimizer_that_reached_the_target(tmp_path):
    rows = rows_for("momentum", SGD_STOPS_AT_20) + rows_for("adam", {10: 1e5, 20: 1.1e5, 50: 1.5e5, 100: 5e5})
    side = zhang_section(write_sweep(tmp_path / "no-sgd", rows, ["momentum", "adam"]))
    assert "Cannot tell: this sweep has no plain SGD run to compare with" in side
    rows = rows_for("sgd", SGD_STOPS_AT_20) + rows_for("adam", dict.fromkeys((10, 20, 50, 100)))
    side = zhang_section(write_sweep(tmp_path / "missed", rows, ["sgd", "adam"]))
    assert "- adam: cannot tell — it reached the target with every seed at no batch size." in side


def test_zhang_comparison_is_empty_with_one_optimizer():
    verdicts = {SGD_LABEL: {"largest_scaling": 20, "largest_scaling_range": (20, 20)}}
    assert zhang_comparison(verdicts, [10, 20, 50]).empty


# -- folders from before the optimizer column ---------------------------------------------------------------------


def test_a_folder_without_an_optimizer_column_reads_and_renders_as_sgd(tmp_path):
    old_columns = [c for c in COLUMNS if c != "optimizer"]
    rows = [{k: v for k, v in sweep_row("sgd", b, s, e).items() if k != "optimizer"}
            for b, e in SGD_STOPS_AT_20.items() for s in range(2)]
    with open(tmp_path / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_columns)
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "machine.json").write_text(json.dumps({"run": "sweep", "dataset": "digits", "settings": {
        "batch_sizes": [10, 20, 50, 100], "seeds": 2, "eta": 3.0, "eta_policy": "fixed", "target": 0.9}}))
    results = read_results(tmp_path)
    assert set(results["optimizer"]) == {SGD_LABEL}
    text = write_report(tmp_path).read_text()
    assert "**Largest batch size that still scales: 20**" in text and "(eta 3)" in text
    assert "### Verdict\n" in text and "Optimizers side by side" not in text and "What is missing" not in text
