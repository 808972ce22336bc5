"""Bad input: every error names the argument and, for data, the first offending row."""
import numpy as np
import pytest

import mbtrain


@pytest.fixture
def net():
    return mbtrain.Network([4, 3, 2], seed=0)


@pytest.fixture
def data(rng):
    return rng.random((10, 4)), rng.integers(0, 2, size=10)


def test_wrong_width(net, data):
    X, y = data
    with pytest.raises(ValueError, match="X: has 5 columns but the network's input layer has 4"):
        net.fit(np.ones((10, 5)), y, epochs=1, batch_size=2, eta=1.0)


def test_one_dimensional_X(net):
    with pytest.raises(ValueError, match=r"X: expected a 2-D array.*reshape\(1, -1\)"):
        net.forward(np.ones(4))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_X_names_the_row(net, data, bad):
    X, y = data
    X[6, 2] = bad
    with pytest.raises(ValueError, match="X: row 6 contains NaN or inf"):
        net.fit(X, y, epochs=1, batch_size=2, eta=1.0)


def test_nonfinite_targets_name_the_row(net, data):
    X, _ = data
    Y = np.zeros((10, 2))
    Y[3, 1] = np.nan
    with pytest.raises(ValueError, match="Y: row 3 contains NaN or inf"):
        net.loss(X, Y)


@pytest.mark.parametrize("label", [2, -1])
def test_labels_out_of_range_name_the_row(net, data, label):
    X, y = data
    y[4] = label
    with pytest.raises(ValueError, match=rf"y: labels must be in \[0, 2\), row 4 is {label}"):
        net.fit(X, y, epochs=1, batch_size=2, eta=1.0)


def test_non_integer_float_labels(net, data):
    X, _ = data
    with pytest.raises(ValueError, match="y: labels must be integers, row 0"):
        net.fit(X, np.full(10, 0.5), epochs=1, batch_size=2, eta=1.0)


def test_label_count_mismatch(net, data):
    X, y = data
    with pytest.raises(ValueError, match="y: has 9 labels but X has 10 rows"):
        net.fit(X, y[:9], epochs=1, batch_size=2, eta=1.0)


def test_target_matrix_shape(net, data):
    X, _ = data
    with pytest.raises(ValueError, match=r"target matrix must have shape \(10, 2\)"):
        net.fit(X, np.zeros((10, 3)), epochs=1, batch_size=2, eta=1.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size: must be >= 1, got 0"),
    ({"batch_size": 2.5}, "batch_size: must be an integer"),
    ({"eta": 0}, "eta: must be a finite number > 0, got 0"),
    ({"eta": -1.0}, "eta: must be a finite number > 0"),
    ({"eta": float("nan")}, "eta: must be a finite number > 0"),
    ({"epochs": 0}, "epochs: must be >= 1"),
    ({"lmbda": -0.1}, "lmbda: must be a finite number >= 0"),
    ({"backend": "cuda"}, "backend: unknown backend 'cuda'"),
])
def test_bad_training_arguments(net, data, kwargs, message):
    X, y = data
    args = {"epochs": 1, "batch_size": 2, "eta": 1.0} | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        net.fit(X, y, **args)


def test_bad_arguments_leave_the_network_untouched(net, data):
    X, y = data
    before = net.params.copy()
    X[9, 0] = np.nan
    with pytest.raises(ValueError):
        net.fit(X, y, epochs=1, batch_size=2, eta=1.0)
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("kwargs, message", [
    ({"cost": "hinge"}, "cost: unknown cost 'hinge'"),
    ({"init": "xavier"}, "init: unknown initialization 'xavier'"),
    ({"dtype": "float16"}, "dtype: must be 'float32' or 'float64'"),
    ({"sizes": [4]}, "sizes: need at least an input and an output layer"),
    ({"sizes": [4, 0, 2]}, r"sizes\[1\]: layer widths must be positive integers"),
])
def test_bad_network_arguments(kwargs, message):
    args = {"sizes": [4, 3, 2]} | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        mbtrain.Network(**args)


def test_object_and_string_arrays_are_type_errors(net):
    with pytest.raises(TypeError, match="X: expected a numeric array"):
        net.forward(np.array([["a", "b", "c", "d"]]))
    with pytest.raises(TypeError, match="X: expected a 2-D numeric array"):
        net.forward(None)


def test_empty_X(net):
    with pytest.raises(ValueError, match="X: has no rows"):
        net.forward(np.zeros((0, 4)))


def test_validation_data_errors_name_it(net, data):
    X, y = data
    with pytest.raises(ValueError, match=r"validation_data\[0\]: has 3 columns"):
        net.fit(X, y, epochs=1, batch_size=2, eta=1.0, validation_data=(np.ones((2, 3)), [0, 1]))


def test_integer_X_is_cast_once(net, data):
    _, y = data
    X = np.ones((10, 4), dtype=np.uint8)
    net.fit(X, y, epochs=1, batch_size=5, eta=0.1)
    assert net.params.dtype == np.float32


@pytest.mark.filterwarnings("ignore:X. the inputs span:UserWarning")  # huge inputs are the point here
@pytest.mark.parametrize("backend", ["loop", "numpy", "numba"])
def test_divergence_stops_and_restores_last_finite_weights(rng, backend):
    """Weights overflow to inf: training stops at that mini-batch and says where.

    No hidden layer, so no saturating sigmoid' can hide the blow-up: the update
    eta/m * (a - y) x with x ~ 1e30 and eta = 1e10 overflows float32.
    """
    X = rng.random((40, 4)) * 1e30
    y = rng.integers(0, 2, size=40)
    net = mbtrain.Network([4, 2], cost="cross_entropy", dtype="float32", seed=0)
    with pytest.raises(mbtrain.TrainingDiverged, match=r"diverged in epoch 1, mini-batch \d+") as info:
        net.fit(X, y, epochs=3, batch_size=4, eta=1e10, backend=backend, seed=0)
    assert np.isfinite(net.params).all()
    assert info.value.epoch == 1
    # the restored weights are exactly those after the batches before the bad one
    replay = mbtrain.Network([4, 2], cost="cross_entropy", dtype="float32", seed=0)
    order = np.random.default_rng(0).permutation(40)
    kept = order[:info.value.batch * 4]
    if len(kept):
        replay.fit(X[kept], y[kept], epochs=1, batch_size=4, eta=1e10, lmbda=0.0, backend=backend,
                   shuffle=False, monitor=False)
    np.testing.assert_array_equal(net.params, replay.params)


@pytest.mark.parametrize("backend", ["loop", "numpy", "numba"])
def test_infinite_loss_stops_training(backend):
    """Finite but astronomically large weights: the loss is inf, training stops, weights restored."""
    rng = np.random.default_rng(1)
    X = rng.random((40, 4))
    y = rng.integers(0, 2, size=40)
    net = mbtrain.Network([4, 3, 2], cost="cross_entropy", dtype="float64", seed=0)
    before = net.params.copy()
    with pytest.raises(mbtrain.TrainingDiverged, match="diverged in epoch 1: the training loss is inf"):
        net.fit(X, y, epochs=3, batch_size=4, eta=1e307, backend=backend)
    np.testing.assert_array_equal(net.params, before)
