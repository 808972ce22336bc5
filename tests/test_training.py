"""The training workflow: history, resuming, seeds, early stopping, callbacks, Ctrl-C."""
import numpy as np
import pandas as pd
import pytest

import mbtrain
from mbtrain.synthetic import make_blobs


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=500, n_features=10, n_classes=3, spread=1.2, seed=3)
    return X[:400], y[:400], X[400:], y[400:]


def test_history_columns(blobs):
    X, y, Xv, yv = blobs
    net = mbtrain.Network([10, 6, 5, 3], seed=0)
    history = net.fit(X, y, epochs=3, batch_size=10, eta=1.0, validation_data=(Xv, yv))
    expected = ["epoch", "eta", "seconds", "examples_per_second", "train_loss", "train_cost", "train_accuracy",
                "val_loss", "val_cost", "val_accuracy", "grad_norm_1", "grad_norm_2", "grad_norm_3"]
    assert list(history.columns) == expected
    assert list(history["epoch"]) == [1, 2, 3]
    assert (history["seconds"] > 0).all()
    assert history.attrs["compile_seconds"] >= 0


def test_train_metrics_are_measured_on_the_full_set_at_epoch_end(blobs):
    X, y, Xv, yv = blobs
    net = mbtrain.Network([10, 6, 3], seed=0)
    history = net.fit(X, y, epochs=2, batch_size=10, eta=1.0, lmbda=0.3, validation_data=(Xv, yv))
    last = history.iloc[-1]
    assert last["train_loss"] == pytest.approx(net.loss(X, y, lmbda=0.3), rel=1e-6)
    assert last["train_accuracy"] == pytest.approx(net.score(X, y))
    assert last["val_loss"] == pytest.approx(net.loss(Xv, yv, lmbda=0.3, n=len(X)), rel=1e-6)
    # the *_cost columns leave the L2 term out: net.loss without lmbda, what `mbtrain evaluate` prints
    assert last["train_cost"] == pytest.approx(net.loss(X, y), rel=1e-6)
    assert last["val_cost"] == pytest.approx(net.loss(Xv, yv), rel=1e-6)
    assert last["val_loss"] > last["val_cost"] + 1e-3
    assert last["val_accuracy"] == pytest.approx(net.score(Xv, yv))
    grad_w, _ = net.gradients(X, y, lmbda=0.3, backend="numpy")
    assert last["grad_norm_1"] == pytest.approx(np.linalg.norm(grad_w[0]), rel=1e-4)
    assert last["grad_norm_2"] == pytest.approx(np.linalg.norm(grad_w[1]), rel=1e-4)


def test_monitor_false_records_only_timing(blobs):
    X, y, Xv, yv = blobs
    net = mbtrain.Network([10, 6, 3], seed=0)
    history = net.fit(X, y, epochs=2, batch_size=10, eta=1.0, validation_data=(Xv, yv), monitor=False)
    assert list(history.columns) == ["epoch", "eta", "seconds", "examples_per_second"]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_two_calls_of_five_epochs_equal_one_call_of_ten(blobs, backend):
    X, y, _, _ = blobs
    once = mbtrain.Network([10, 6, 3], seed=7)
    once.fit(X, y, epochs=10, batch_size=16, eta=0.5, backend=backend)
    twice = mbtrain.Network([10, 6, 3], seed=7)
    twice.fit(X, y, epochs=5, batch_size=16, eta=0.5, backend=backend)
    twice.fit(X, y, epochs=5, batch_size=16, eta=0.5, backend=backend)
    np.testing.assert_array_equal(once.params, twice.params)
    assert list(twice.history["epoch"]) == list(range(1, 11))
    cols = ["train_loss", "train_accuracy"]
    pd.testing.assert_frame_equal(once.history[cols], twice.history[cols])


def test_same_seed_same_history_bit_for_bit(blobs):
    X, y, Xv, yv = blobs
    runs = []
    for _ in range(2):
        net = mbtrain.Network([10, 6, 3], seed=11)
        h = net.fit(X, y, epochs=3, batch_size=8, eta=1.0, validation_data=(Xv, yv))
        runs.append((net.params.copy(), h.drop(columns=["seconds", "examples_per_second"])))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    pd.testing.assert_frame_equal(runs[0][1], runs[1][1])
    other = mbtrain.Network([10, 6, 3], seed=12)
    other.fit(X, y, epochs=3, batch_size=8, eta=1.0)
    assert not np.array_equal(other.params, runs[0][0])


def test_fit_seed_reseeds_the_shuffle(blobs):
    X, y, _, _ = blobs
    a = mbtrain.Network([10, 6, 3], seed=1)
    b = mbtrain.Network([10, 6, 3], seed=1)
    b.rng.random(5)  # b's stream has moved on ...
    a.fit(X, y, epochs=2, batch_size=8, eta=1.0, seed=99)
    b.fit(X, y, epochs=2, batch_size=8, eta=1.0, seed=99)  # ... but an explicit seed reseeds it
    np.testing.assert_array_equal(a.params, b.params)


def test_early_stopping_restores_the_best_epoch(blobs):
    X, y, Xv, yv = blobs
    net = mbtrain.Network([10, 6, 3], seed=0)
    stopper = mbtrain.EarlyStopping(patience=2)
    # eta this large makes validation accuracy wander, so it stops early
    history = net.fit(X, y, epochs=40, batch_size=4, eta=20.0, validation_data=(Xv, yv),
                      early_stopping=stopper)
    best = history["val_accuracy"].max()
    assert stopper.stopped_epoch is not None and len(history) < 40
    assert stopper.best_accuracy == best
    assert net.score(Xv, yv) == pytest.approx(best)
    # stopped exactly `patience` epochs after the best one
    assert stopper.stopped_epoch - stopper.best_epoch == 2


def test_early_stopping_needs_validation_data(blobs):
    X, y, _, _ = blobs
    net = mbtrain.Network([10, 6, 3], seed=0)
    with pytest.raises(ValueError, match="early_stopping: needs validation_data"):
        net.fit(X, y, epochs=2, batch_size=8, eta=1.0, early_stopping=3)


def test_callback_sees_history_and_can_stop(blobs):
    X, y, _, _ = blobs
    seen = []

    def stop_after_three(net, history):
        seen.append(len(history))
        return len(history) == 3

    net = mbtrain.Network([10, 6, 3], seed=0)
    history = net.fit(X, y, epochs=10, batch_size=8, eta=1.0, callbacks=[stop_after_three])
    assert seen == [1, 2, 3]
    assert len(history) == 3


def test_ctrl_c_keeps_the_last_completed_epoch(blobs, tmp_path):
    X, y, _, _ = blobs
    path = tmp_path / "ckpt.npz"

    def interrupt_in_epoch_three(net, history):
        if len(history) == 2:
            import mbtrain.training as training

            real = training._run_epoch

            def raising(*args, **kwargs):
                training._run_epoch = real
                raise KeyboardInterrupt

            training._run_epoch = raising

    net = mbtrain.Network([10, 6, 3], seed=0)
    with pytest.raises(mbtrain.TrainingInterrupted, match=f"after epoch 2; saved in {path}") as info:
        net.fit(X, y, epochs=5, batch_size=8, eta=1.0, checkpoint=path, callbacks=[interrupt_in_epoch_three])
    assert info.value.epoch == 2
    reference = mbtrain.Network([10, 6, 3], seed=0)
    reference.fit(X, y, epochs=2, batch_size=8, eta=1.0)
    np.testing.assert_array_equal(net.params, reference.params)
    assert list(net.history["epoch"]) == [1, 2]
    on_disk = mbtrain.load(path)
    np.testing.assert_array_equal(on_disk.params, reference.params)
    # resuming after the interrupt continues exactly as an uninterrupted run
    net.fit(X, y, epochs=3, batch_size=8, eta=1.0)
    reference.fit(X, y, epochs=3, batch_size=8, eta=1.0)
    np.testing.assert_array_equal(net.params, reference.params)


def test_checkpoint_is_written_every_epoch(blobs, tmp_path):
    X, y, _, _ = blobs
    path = tmp_path / "model.npz"
    epochs_on_disk = []

    def look(net, history):
        epochs_on_disk.append(list(mbtrain.load(path).history["epoch"]))

    net = mbtrain.Network([10, 6, 3], seed=0)
    net.fit(X, y, epochs=3, batch_size=8, eta=1.0, checkpoint=path, callbacks=[look])
    assert epochs_on_disk == [[1], [1, 2], [1, 2, 3]]


def test_progress_bar_is_shown_when_asked(blobs, capsys):
    X, y, _, _ = blobs
    net = mbtrain.Network([10, 6, 3], seed=0)
    quiet = mbtrain.Network([10, 6, 3], seed=0)
    net.fit(X, y, epochs=1, batch_size=8, eta=1.0, progress=True)
    assert "epoch 1" in capsys.readouterr().err
    quiet.fit(X, y, epochs=1, batch_size=8, eta=1.0, progress=False)
    assert capsys.readouterr().err == ""
    # progress splits the epoch into several calls: same arithmetic
    np.testing.assert_array_equal(net.params, quiet.params)


def test_bad_callbacks_are_named(blobs):
    X, y, _, _ = blobs
    net = mbtrain.Network([10, 6, 3], seed=0)
    with pytest.raises(TypeError, match=r"callbacks\[0\]"):
        net.fit(X, y, epochs=1, batch_size=8, eta=1.0, callbacks=[42])
