"""The optimizer state lives with the network: resuming, saving, Ctrl-C, fresh or continued, copies, files."""
import json
import warnings
import zipfile

import numpy as np
import pytest

import mbtrain
from mbtrain.optim import Adam, Momentum
from mbtrain.synthetic import make_blobs

OPTIMIZERS = ("momentum", "nesterov", "adam")


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=300, n_features=8, n_classes=3, spread=1.2, seed=3)
    return X[:240], y[:240], X[240:], y[240:]


def fit(net, X, y, epochs, optimizer, backend="numpy", **kwargs):
    return net.fit(X, y, epochs=epochs, batch_size=16, eta=0.05, lmbda=0.2, backend=backend, optimizer=optimizer,
                   **kwargs)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_two_fits_of_five_epochs_equal_one_of_ten(blobs, optimizer, backend):
    X, y, _, _ = blobs
    once = mbtrain.Network([8, 6, 3], seed=7)
    fit(once, X, y, 10, optimizer, backend)
    twice = mbtrain.Network([8, 6, 3], seed=7)
    first = fit(twice, X, y, 5, optimizer, backend)
    second = fit(twice, X, y, 5, optimizer, backend)
    np.testing.assert_array_equal(once.params, twice.params)
    for key, a in once.optimizer_state.arrays.items():
        np.testing.assert_array_equal(a, twice.optimizer_state.arrays[key])
    assert once.optimizer_state.step == twice.optimizer_state.step == 10 * 15
    assert first.attrs["optimizer_state"] == "fresh" and second.attrs["optimizer_state"] == "continued"
    assert second.attrs["optimizer"] == mbtrain.optim.get_optimizer(optimizer).describe()


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_resuming_from_a_saved_file_is_exact(blobs, tmp_path, optimizer):
    X, y, _, _ = blobs
    once = mbtrain.Network([8, 6, 3], seed=7)
    fit(once, X, y, 10, optimizer)
    twice = mbtrain.Network([8, 6, 3], seed=7)
    fit(twice, X, y, 5, optimizer)
    twice.save(tmp_path / "half.npz")
    loaded = mbtrain.load(tmp_path / "half.npz")
    assert loaded.optimizer_state.is_for(mbtrain.optim.get_optimizer(optimizer))
    assert fit(loaded, X, y, 5, optimizer).attrs["optimizer_state"] == "continued"
    np.testing.assert_array_equal(once.params, loaded.params)
    for key, a in once.optimizer_state.arrays.items():
        np.testing.assert_array_equal(a, loaded.optimizer_state.arrays[key])


def test_a_file_with_state_is_format_2_and_one_without_stays_1(blobs, tmp_path):
    X, y, _, _ = blobs
    net = mbtrain.Network([8, 6, 3], seed=7)
    fit(net, X, y, 1, "sgd")
    net.save(tmp_path / "sgd.npz")
    fit(net, X, y, 1, "adam")
    net.save(tmp_path / "adam.npz")
    versions = {}
    for name in ("sgd", "adam"):
        with np.load(tmp_path / f"{name}.npz") as archive:
            versions[name] = json.loads(str(archive["metadata"]))["format_version"]
            members = set(archive.files)
    assert versions == {"sgd": 1, "adam": 2}
    assert {"optimizer_m", "optimizer_s"} <= members
    assert mbtrain.load(tmp_path / "sgd.npz").optimizer_state is None


def test_load_casts_the_state_with_the_parameters(blobs, tmp_path):
    X, y, _, _ = blobs
    net = mbtrain.Network([8, 6, 3], dtype="float64", seed=7)
    fit(net, X, y, 2, "adam")
    net.save(tmp_path / "m.npz")
    narrow = mbtrain.load(tmp_path / "m.npz", dtype="float32")
    assert all(a.dtype == np.float32 for a in narrow.optimizer_state.arrays.values())
    np.testing.assert_allclose(narrow.optimizer_state.arrays["m"], net.optimizer_state.arrays["m"], rtol=1e-6)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_ctrl_c_in_the_middle_of_an_epoch_puts_the_state_back(blobs, tmp_path, monkeypatch, optimizer):
    """An interrupt after an epoch's arithmetic ran: parameters, state and stream are those of the epoch before."""
    X, y, _, _ = blobs
    impl = mbtrain.BACKENDS["numpy"]
    real = impl.optimizer_epoch
    calls = []

    def interrupted_in_epoch_three(*args):
        calls.append(1)
        result = real(*args)  # the state and the parameters move ...
        if len(calls) == 3:
            raise KeyboardInterrupt  # ... and then Ctrl-C
        return result

    path = tmp_path / "ckpt.npz"
    net = mbtrain.Network([8, 6, 3], seed=7)
    monkeypatch.setattr(impl, "optimizer_epoch", interrupted_in_epoch_three)
    with pytest.raises(mbtrain.TrainingInterrupted) as info:
        fit(net, X, y, 5, optimizer, checkpoint=path)
    monkeypatch.undo()
    assert info.value.epoch == 2
    reference = mbtrain.Network([8, 6, 3], seed=7)
    fit(reference, X, y, 2, optimizer)
    np.testing.assert_array_equal(net.params, reference.params)
    assert net.optimizer_state.step == reference.optimizer_state.step
    for key, a in reference.optimizer_state.arrays.items():
        np.testing.assert_array_equal(a, net.optimizer_state.arrays[key])
    on_disk = mbtrain.load(path)
    np.testing.assert_array_equal(on_disk.optimizer_state.arrays[key], reference.optimizer_state.arrays[key])
    # resumed, it is the uninterrupted run
    fit(net, X, y, 3, optimizer)
    fit(reference, X, y, 3, optimizer)
    np.testing.assert_array_equal(net.params, reference.params)


def test_ctrl_c_in_the_first_epoch_of_a_new_optimizer_keeps_the_old_state(blobs, monkeypatch):
    X, y, _, _ = blobs
    net = mbtrain.Network([8, 6, 3], seed=7)
    fit(net, X, y, 2, "momentum")
    kept = net.optimizer_state.copy()
    impl = mbtrain.BACKENDS["numpy"]
    real = impl.optimizer_epoch

    def interrupted(*args):
        real(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(impl, "optimizer_epoch", interrupted)
    with pytest.raises(mbtrain.TrainingInterrupted):
        fit(net, X, y, 3, "adam")
    assert net.optimizer_state.is_for(Momentum())
    np.testing.assert_array_equal(net.optimizer_state.arrays["velocity"], kept.arrays["velocity"])


def test_another_optimizer_starts_a_fresh_state_and_says_so(blobs):
    X, y, _, _ = blobs
    net = mbtrain.Network([8, 6, 3], seed=7)
    assert net.optimizer_state is None
    assert fit(net, X, y, 1, "momentum").attrs["optimizer_state"] == "fresh"
    history = fit(net, X, y, 1, Momentum(mu=0.5))
    assert history.attrs["optimizer_state"] == "fresh (the network's state was for momentum(mu=0.9))"
    assert history.attrs["optimizer"] == {"name": "momentum", "mu": 0.5}
    assert net.optimizer_state.step == 15  # one epoch of 240 rows in batches of 16
    history = fit(net, X, y, 1, "adam")
    assert history.attrs["optimizer_state"] == "fresh (the network's state was for momentum(mu=0.5))"
    assert fit(net, X, y, 1, Adam()).attrs["optimizer_state"] == "continued"
    history = fit(net, X, y, 1, "sgd")
    assert history.attrs["optimizer_state"].startswith("none (sgd keeps no state; the network's state for adam(")
    assert net.optimizer_state is None
    assert fit(net, X, y, 1, "sgd").attrs["optimizer_state"] == "none"


def test_the_history_says_optimizer_and_schedule(blobs):
    X, y, _, _ = blobs
    net = mbtrain.Network([8, 6, 3], seed=7)
    history = fit(net, X, y, 2, "nesterov", schedule="cosine")
    assert history.attrs["optimizer"] == {"name": "nesterov", "mu": 0.9}
    assert history.attrs["schedule"] == {"name": "cosine", "epochs": 2, "eta_min": 0.0}
    assert list(history["eta"]) == [0.05, pytest.approx(0.025)]


def test_copy_and_astype_copy_the_state(blobs):
    X, y, _, _ = blobs
    net = mbtrain.Network([8, 6, 3], dtype="float64", seed=7)
    fit(net, X, y, 1, "adam")
    copy = net.copy()
    assert copy.optimizer_state is not net.optimizer_state
    copy.optimizer_state.arrays["m"][0] += 1.0
    assert copy.optimizer_state.arrays["m"][0] != net.optimizer_state.arrays["m"][0]
    narrow = net.astype("float32")
    assert narrow.optimizer_state.arrays["s"].dtype == np.float32
    assert narrow.optimizer_state.step == net.optimizer_state.step
    net.optimizer_state.arrays["s"][5] = 1e300
    with pytest.raises(ValueError, match=r"dtype: optimizer state s\[5\] is 1e\+300, which overflows float32"):
        net.astype("float32")


def test_early_stopping_restores_the_state_of_the_best_epoch(blobs):
    X, y, Xv, yv = blobs
    net = mbtrain.Network([8, 6, 3], seed=7)
    stopper = mbtrain.EarlyStopping(patience=2)
    history = net.fit(X, y, epochs=12, batch_size=16, eta=2.0, optimizer="momentum", validation_data=(Xv, yv),
                      early_stopping=stopper, backend="numpy")
    assert stopper.best_epoch < history["epoch"].iloc[-1]  # a later epoch was undone
    best = mbtrain.Network([8, 6, 3], seed=7)
    best.fit(X, y, epochs=stopper.best_epoch, batch_size=16, eta=2.0, optimizer="momentum", backend="numpy")
    np.testing.assert_array_equal(net.params, best.params)
    np.testing.assert_array_equal(net.optimizer_state.arrays["velocity"], best.optimizer_state.arrays["velocity"])


def test_network2_json_warns_that_the_state_is_dropped(blobs, tmp_path):
    X, y, _, _ = blobs
    net = mbtrain.Network([8, 6, 3], cost="cross_entropy", seed=7)
    fit(net, X, y, 1, "sgd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.save(tmp_path / "plain.json", format="network2")  # no state: no warning
    fit(net, X, y, 1, "adam")
    with pytest.warns(UserWarning, match=r"network2 format has no optimizer state; the network's state for "
                                         r"adam\(.*is not saved \(format='npz' keeps it\)"):
        net.save(tmp_path / "m.json", format="network2")
    assert mbtrain.load(tmp_path / "m.json").optimizer_state is None


def _rewrite(path, out, metadata=None, members=None, drop=()):
    """A copy of the model at ``path`` with its metadata edited and members replaced or dropped."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files if name not in drop}
    meta = json.loads(str(arrays["metadata"]))
    if metadata is not None:
        metadata(meta)
    arrays["metadata"] = np.array(json.dumps(meta))
    arrays.update(members or {})
    np.savez(out, **arrays)
    return out


@pytest.fixture
def adam_model(blobs, tmp_path):
    X, y, _, _ = blobs
    net = mbtrain.Network([8, 6, 3], dtype="float64", seed=7)
    fit(net, X, y, 1, "adam")
    return net.save(tmp_path / "adam.npz"), net.n_params


@pytest.mark.parametrize("edit, message", [
    (dict(drop=("optimizer_s",)), r"the optimizer state of adam\(.*has no 's' array"),
    (dict(members={"optimizer_m": np.zeros(3)}), r"optimizer state 'm' must be a flat float vector of 75 values"),
    (dict(members={"optimizer_m": np.zeros(75, dtype=np.int64)}), "'m' must be a flat float vector"),
    (dict(members={"optimizer_m": np.full(75, np.nan)}), "optimizer state 'm' contains NaN or inf"),
    (dict(members={"optimizer_s": -np.ones(75)}), r"s\[0\] is -1.0; Adam's second moment is >= 0"),
    (dict(metadata=lambda m: m["optimizer_state"].update(step=-1)), "step -1 is not a whole number >= 0"),
    (dict(metadata=lambda m: m["optimizer_state"].update(step=True)), "step True is not a whole number"),
    (dict(metadata=lambda m: m["optimizer_state"]["optimizer"].update(name="rmsprop")),
     "invalid optimizer state .*not an optimizer description"),
    (dict(metadata=lambda m: m["optimizer_state"]["optimizer"].update(beta1=1.5)),
     r"invalid optimizer state \(beta1: must be in \[0, 1\), got 1.5\)"),
    (dict(metadata=lambda m: m["optimizer_state"]["optimizer"].update(lr=0.1)), "invalid optimizer state"),
    (dict(metadata=lambda m: m.update(optimizer_state=[1, 2])), "invalid optimizer state metadata"),
])
def test_a_damaged_state_is_refused_naming_the_file(adam_model, tmp_path, edit, message):
    path, n_params = adam_model
    assert n_params == 75
    bad = _rewrite(path, tmp_path / "bad.npz", **edit)
    with pytest.raises(mbtrain.ModelFormatError, match=rf"{bad}: .*{message}"):
        mbtrain.load(bad)


def test_a_state_overflowing_the_requested_dtype_is_refused(adam_model, tmp_path):
    path, _ = adam_model
    bad = _rewrite(path, tmp_path / "big.npz", members={"optimizer_s": np.full(75, 1e300)})
    assert mbtrain.load(bad).optimizer_state.arrays["s"][0] == 1e300
    with pytest.raises(mbtrain.ModelFormatError, match="'s' is finite as float64 but overflows float32"):
        mbtrain.load(bad, dtype="float32")


def test_a_file_from_a_newer_format_is_refused(adam_model, tmp_path):
    path, _ = adam_model
    bad = _rewrite(path, tmp_path / "new.npz", metadata=lambda m: m.update(format_version=3))
    with pytest.raises(mbtrain.ModelFormatError, match="newer mbtrain"):
        mbtrain.load(bad)
    assert zipfile.is_zipfile(bad)
