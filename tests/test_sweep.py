"""mbtrain sweep: eta policies, the time-to-target runs, seeds, interruption, the noise scale."""
import math

import numpy as np
import pandas as pd
import pytest

from mbtrain import Network
from mbtrain.backends import get_backend
from mbtrain.backends.loop import backprop
from mbtrain.bench.data import BenchData
from mbtrain.bench.noise import gradient_noise_scale, noise_scale_from_moments, noise_scale_from_samples
from mbtrain.bench.sweep import etas_for, sweep, train_to_target
from mbtrain.synthetic import make_blobs

SIZES = [64, 8, 10]
SWEEP_REQUIRED = ["batch_size", "eta", "seed", "epochs_to_target", "steps_to_target", "seconds_to_target",
                  "best_val_accuracy"]


def blobs(rows=600):
    X, y = make_blobs(n_samples=rows + 200, n_features=64, n_classes=10, spread=1.2, dtype="float64", seed=0)
    return BenchData("synthetic", X[:rows], y[:rows], X[rows:], y[rows:], "blobs")


def run_sweep(out, **kwargs):
    options = dict(batch_sizes=[5, 100], seeds=2, max_epochs=3, target=0.6, progress=False)
    options.update(kwargs)
    return sweep(blobs(), SIZES, out=out, **options)


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    return run_sweep(tmp_path_factory.mktemp("sweep"))


def test_eta_policies():
    assert etas_for(100, 3.0, "fixed") == [3.0]
    assert etas_for(100, 3.0, "linear", ref_batch_size=10) == [30.0]
    assert etas_for(40, 3.0, "sqrt", ref_batch_size=10) == [6.0]
    assert etas_for(40, 3.0, "grid", ref_batch_size=10, grid_factors=(0.5, 1, 2)) == [3.0, 6.0, 12.0]
    with pytest.raises(ValueError, match="eta_policy"):
        etas_for(10, 3.0, "cosine")


def test_sweep_rows_and_columns(sweep_run):
    results = pd.read_csv(sweep_run.out / "results.csv")
    assert set(SWEEP_REQUIRED) <= set(results.columns)
    runs = results[results["kind"] == "sweep"]
    assert len(runs) == 2 * 2  # batch sizes x seeds
    reached = runs[runs["status"] == "reached"]
    missed = runs[runs["status"] != "reached"]
    assert not reached.empty and not missed.empty  # b=5 gets there in 3 epochs, b=100 does not
    assert reached[SWEEP_REQUIRED].notna().all().all()
    assert missed[["epochs_to_target", "steps_to_target", "seconds_to_target"]].isna().all().all()
    assert (reached["best_val_accuracy"] >= 0.6).all()
    # steps and examples to target agree with the batch size and the epochs
    assert (reached["examples_to_target"] == reached["steps_to_target"] * reached["batch_size"]).all()
    # evaluations fall on mini-batch boundaries: the steps are the epochs times the steps per epoch, exactly
    steps_per_epoch = np.ceil(600 / reached["batch_size"])
    np.testing.assert_allclose(reached["steps_to_target"], reached["epochs_to_target"] * steps_per_epoch, rtol=1e-12)
    # and they are those of the run's first evaluation at the target; a run that missed never got there
    curves = results[results["kind"] == "curve"]
    for run in runs.itertuples():
        curve = curves[(curves["batch_size"] == run.batch_size) & (curves["seed"] == run.seed)]
        assert run.best_val_accuracy == curve["val_accuracy"].max()
        at_target = curve[curve["val_accuracy"] >= 0.6]
        if run.status == "reached":
            assert at_target["steps"].iloc[0] == run.steps_to_target == curve["steps"].iloc[-1]
            assert at_target["epoch"].iloc[0] == pytest.approx(run.epochs_to_target)
        else:
            assert at_target.empty and curve["epoch"].iloc[-1] == 3  # max_epochs


def test_learning_curves_are_recorded_per_evaluation(sweep_run):
    results = sweep_run.results
    curves = results[results["kind"] == "curve"]
    one = curves[(curves["batch_size"] == 100) & (curves["seed"] == 0)]
    # an evaluation at step 0, then 4 per epoch (6 mini-batches per epoch: cut at 0, 2, 3, 4, 6) for 3 epochs
    assert len(one) == 1 + 3 * 4
    assert one["epoch"].iloc[-1] == 3 and one["steps"].iloc[-1] == 18
    assert one["seconds"].is_monotonic_increasing


def test_same_seed_same_curves(sweep_run, tmp_path):
    again = run_sweep(tmp_path).results
    columns = ["batch_size", "seed", "epoch", "steps", "train_loss", "val_loss", "val_accuracy"]
    first = sweep_run.results
    a = first[first["kind"] == "curve"][columns].reset_index(drop=True)
    b = again[again["kind"] == "curve"][columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # and different seeds differ (different initial weights and order)
    s0 = a[(a["batch_size"] == 5) & (a["seed"] == 0)]["train_loss"].to_numpy()
    s1 = a[(a["batch_size"] == 5) & (a["seed"] == 1)]["train_loss"].to_numpy()
    assert not np.array_equal(s0[:3], s1[:3])


def test_same_initialization_for_every_batch_size(sweep_run):
    curves = sweep_run.results[sweep_run.results["kind"] == "curve"]
    start = curves[(curves["steps"] == 0) & (curves["seed"] == 0)]
    assert len(start) == 2 and start["train_loss"].nunique() == 1


def test_noise_scale_is_recorded_along_one_run(sweep_run):
    noise = sweep_run.results[sweep_run.results["kind"] == "noise"]
    assert len(noise) >= 2 and (noise["batch_size"] == 5).all() and (noise["seed"] == 0).all()
    assert noise["epoch"].iloc[0] == 0 and (noise["trace_sigma"] > 0).all()
    # each estimate equals one computed apart: replay the run (seed 0, batches of 5, eta 3, float32) to the
    # point's step, then the per-example gradients of all 600 rows by the book's backprop, in float64
    data = blobs()
    X = data.X_train.astype(np.float32)
    Y = np.eye(10, dtype=np.float32)[data.y_train]
    steps_per_epoch = 600 // 5
    for point in noise.itertuples():
        net = Network(SIZES, cost="quadratic", init="gaussian", dtype="float32", seed=0)
        for epoch_start in range(0, int(point.steps), steps_per_epoch):
            batches = min(steps_per_epoch, int(point.steps) - epoch_start)
            order = net.rng.permutation(600)[:batches * 5]
            assert get_backend("numba").sgd_epoch(net, X, Y, order, 5, 3.0, 0.0, 600) == -1
        assert point.epoch == pytest.approx(point.steps / steps_per_epoch)
        net64 = net.astype("float64")
        grads = [net64.layout.pack(*backprop(net64.weights, net64.biases, net64.cost, x, t), np.float64)
                 for x, t in zip(X.astype(np.float64), Y.astype(np.float64))]
        expected = noise_scale_from_samples(np.array(grads))
        for key in ("noise_scale", "trace_sigma", "grad_norm_sq"):
            assert getattr(point, key) == pytest.approx(expected[key], rel=1e-9), (point.steps, key)
        assert point.noise_rows == 600


def test_interruption_keeps_the_finished_runs(tmp_path):
    finished = []

    def interrupt_after_two_runs(row):
        if row["kind"] == "sweep":
            finished.append(row)
            if len(finished) == 2:
                raise KeyboardInterrupt

    result = run_sweep(tmp_path, on_row=interrupt_after_two_runs)
    assert result.interrupted
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert len(on_disk[on_disk["kind"] == "sweep"]) == 2
    assert "Interrupted" in (tmp_path / "report.md").read_text()


def test_grid_policy_picks_an_eta_per_batch_size(tmp_path):
    result = run_sweep(tmp_path, batch_sizes=[10], seeds=1, eta_policy="grid", grid_factors=(0.1, 1.0),
                       ref_batch_size=10)
    runs = result.results[result.results["kind"] == "sweep"]
    assert sorted(runs["eta"]) == pytest.approx([0.3, 3.0])
    assert "Best eta per batch size" in (tmp_path / "report.md").read_text()


def test_train_to_target_counts_steps_at_the_evaluation_points(monkeypatch):
    """600 rows in batches of 100: 6 steps an epoch, evaluated after steps 2, 3, 4 and 6 (cuts at k*6/4, rounded)."""
    data = blobs()
    eye = np.eye(10, dtype=np.float32)
    X, Xv = data.X_train.astype(np.float32), data.X_val.astype(np.float32)
    backend = get_backend("numba")
    real, batches = type(backend).optimizer_epoch, []

    def count_batches(self, net, X, Y, order, batch_size, *args):
        batches.append(-(-len(order) // batch_size))
        return real(self, net, X, Y, order, batch_size, *args)

    monkeypatch.setattr(type(backend), "optimizer_epoch", count_batches)
    points = []
    summary = train_to_target(Network(SIZES, seed=0), X, eye[data.y_train], Xv, eye[data.y_val], batch_size=100,
                              eta=3.0, target=1.1, max_epochs=2, evals_per_epoch=4, on_eval=points.append)
    assert summary["status"] == "not reached" and summary["epochs_run"] == 2
    assert "steps_to_target" not in summary
    assert [p["steps"] for p in points] == [0, 2, 3, 4, 6, 8, 9, 10, 12]
    assert batches == [2, 1, 1, 2] * 2  # the mini-batches run between two evaluation points: the steps counted
    assert [p["epoch"] for p in points] == pytest.approx([s / 6 for s in (0, 2, 3, 4, 6, 8, 9, 10, 12)])
    # the same run with a target it reaches at one of those points: that point's steps, epochs and examples
    target = max(p["val_accuracy"] for p in points[1:])
    expected = next(p for p in points if p["val_accuracy"] >= target)
    assert points[0]["val_accuracy"] < target
    batches.clear()
    summary = train_to_target(Network(SIZES, seed=0), X, eye[data.y_train], Xv, eye[data.y_val], batch_size=100,
                              eta=3.0, target=target, max_epochs=2, evals_per_epoch=4)
    assert summary["status"] == "reached"
    assert summary["steps_to_target"] == expected["steps"] == sum(batches)
    assert summary["epochs_to_target"] == expected["epoch"]
    assert summary["examples_to_target"] == 100 * expected["steps"]


def test_noise_scale_known_answer():
    # Per-example gradients G + noise with Sigma = diag(s^2): B_simple = sum(s^2) / |G|^2 = 4 / 0.25 = 16.
    rng = np.random.default_rng(0)
    G = np.array([0.3, -0.4, 0.0, 0.0])
    s = np.array([1.0, 1.0, 1.0, 1.0])
    grads = G + rng.standard_normal((200_000, 4)) * s
    estimate = noise_scale_from_samples(grads)
    assert estimate["trace_sigma"] == pytest.approx(4.0, rel=0.01)
    assert estimate["grad_norm_sq"] == pytest.approx(0.25, rel=0.05)
    assert estimate["noise_scale"] == pytest.approx(16.0, rel=0.06)


def test_noise_estimates_are_unbiased_on_small_samples():
    # With 8 samples the naive |mean|^2 overestimates |G|^2 by tr(Sigma)/8 = 0.5; the estimator must not.
    rng = np.random.default_rng(1)
    G = np.array([0.3, -0.4, 0.0, 0.0])
    draws = [noise_scale_from_samples(G + rng.standard_normal((8, 4))) for _ in range(20_000)]
    assert np.mean([d["trace_sigma"] for d in draws]) == pytest.approx(4.0, rel=0.02)
    assert np.mean([d["grad_norm_sq"] for d in draws]) == pytest.approx(0.25, abs=0.02)


def test_noise_scale_when_the_gradient_is_lost_in_noise():
    estimate = noise_scale_from_moments(np.zeros(3), sum_sq_norm=30.0, count=10)
    assert estimate["grad_norm_sq"] < 0 and math.isinf(estimate["noise_scale"])
    with pytest.raises(ValueError, match="count"):
        noise_scale_from_moments(np.zeros(3), 1.0, 1)


@pytest.mark.parametrize("cost", ["quadratic", "cross_entropy", "softmax"])
def test_network_noise_scale_equals_the_per_example_loop(cost):
    X, y = make_blobs(n_samples=50, n_features=6, n_classes=3, dtype="float64", seed=2)
    Y = np.eye(3)[y]
    net = Network([6, 5, 4, 3], cost=cost, dtype="float64", seed=1)
    lmbda, n = 0.7, 500
    grads = []
    for x, t in zip(X, Y):
        nabla_w, nabla_b = backprop(net.weights, net.biases, net.cost, x, t)
        grads.append(net.layout.pack([g + lmbda / n * w for g, w in zip(nabla_w, net.weights)], nabla_b, np.float64))
    expected = noise_scale_from_samples(np.array(grads))
    got = gradient_noise_scale(net, X, Y, lmbda=lmbda, n=n)
    for key in ("noise_scale", "trace_sigma", "grad_norm_sq"):
        assert got[key] == pytest.approx(expected[key], rel=1e-10)
