"""Network and fit at their edges (issues 15 and 16): wrong label shapes, overflowing casts,
checkpoints after early stopping, Fortran-order data, monitoring memory, unscaled inputs."""
import tracemalloc
import warnings

import numpy as np
import pytest

import mbtrain
from mbtrain.backends import base
from mbtrain import _validation, training
from mbtrain.backends._targets import row_labels


@pytest.fixture(scope="module")
def digits():
    X_train, y_train, X_test, y_test = mbtrain.datasets.load("digits")
    net = mbtrain.Network([64, 30, 10], cost="cross_entropy", init="scaled", seed=0)
    net.fit(X_train, y_train, epochs=5, batch_size=10, eta=0.5, progress=False)
    return net, X_test, y_test


# -- 1. labels: one check for fit, loss, score and evaluate ----------------------------------

def test_score_refuses_a_column_of_labels_instead_of_broadcasting_it(digits):
    """The silent wrong answer: score(X, y[:, None]) gave 0.097 where score(X, y) gives 0.9."""
    net, X, y = digits
    assert net.score(X, y) > 0.8
    column = y[:, None]
    message = rf"y: target matrix must have shape \({len(y)}, 10\), got \({len(y)}, 1\) \(a column of labels"
    with pytest.raises(ValueError, match=message):
        net.score(X, column)
    with pytest.raises(ValueError, match=message):
        net.fit(X, column, epochs=1, batch_size=10, eta=0.5)
    with pytest.raises(ValueError, match=r"Y: target matrix must have shape .* \(a column of labels"):
        net.loss(X, column)


def test_score_of_a_target_matrix_is_the_score_of_its_labels(digits):
    net, X, y = digits
    assert net.score(X, np.eye(10)[y]) == net.score(X, y)


@pytest.mark.parametrize("bad, message", [
    (0.5, r"y: labels must be integers, row 3 is 0.5"),
    (1.7, r"y: labels must be integers, row 3 is 1.7"),
    (10, r"y: labels must be in \[0, 10\), row 3 is 10"),
    (-1, r"y: labels must be in \[0, 10\), row 3 is -1"),
    (1e20, r"y: labels must be in \[0, 10\), row 3 is 1e\+20"),
    (np.nan, r"y: row 3 is NaN or inf"),
])
def test_score_refuses_labels_fit_refuses(digits, bad, message):
    net, X, y = digits
    labels = y.astype(np.float64)
    labels[3] = bad
    with pytest.raises(ValueError, match=message):
        net.score(X, labels)
    with pytest.raises(ValueError, match=message):
        net.fit(X, labels, epochs=1, batch_size=10, eta=0.5)


def test_evaluate_refuses_shapes_it_would_broadcast(digits):
    net, X, y = digits
    Y = net._check_targets(X, y, keep_labels=True)
    good = training.evaluate(net, X, Y, Y, 0.0, len(y))
    assert good.accuracy == pytest.approx(net.score(X, y))
    with pytest.raises(ValueError, match=rf"Y: expected {len(y)} integer labels or a \({len(y)}, 10\) target matrix, "
                                         rf"got shape \({len(y)}, 1\)"):
        training.evaluate(net, X, Y[:, None], Y, 0.0, len(y))
    with pytest.raises(ValueError, match=rf"labels: expected {len(y)} integer labels, shape \({len(y)},\), "
                                         rf"got shape \({len(y)}, 1\)"):
        training.evaluate(net, X, Y, Y[:, None], 0.0, len(y))


# -- 2. casts that overflow, and non-finite parameters ---------------------------------------

def test_set_params_refuses_a_value_that_overflows_float32():
    net = mbtrain.Network([3, 2, 2], dtype="float32", seed=0)
    before = net.params.copy()
    theta = net.get_params()
    theta[7] = 1e300
    with pytest.raises(ValueError, match=r"theta: parameter 7 \(layer 0 biases\[1\]\) is 1e\+300, "
                                         r"which overflows float32"):
        net.set_params(theta)
    np.testing.assert_array_equal(net.params, before)
    theta[7] = 3e38  # just inside float32: accepted
    net.set_params(theta)
    assert np.isfinite(net.params).all()


def test_weights_setter_refuses_a_value_that_overflows():
    net = mbtrain.Network([3, 2, 2], dtype="float32", seed=0)
    weights = [w.astype(np.float64) for w in net.weights]
    weights[1][1, 0] = -1e300
    with pytest.raises(ValueError, match=r"weights: parameter \d+ \(layer 1 weights\[1, 0\]\) is -1e\+300"):
        net.weights = weights


def test_astype_float32_refuses_a_float64_value_beyond_its_range():
    net = mbtrain.Network([3, 2, 2], dtype="float64", seed=0)
    net.params[9] = 1e300
    with pytest.raises(ValueError, match=r"dtype: parameter 9 \(layer 1 weights\[0, 1\]\) is 1e\+300, "
                                         r"which overflows float32"):
        net.astype("float32")
    assert net.astype("float64").params[9] == 1e300  # widening or copying never overflows
    net.params[9] = 1.0
    assert net.astype("float32").dtype == np.float32


def test_fit_refuses_a_network_that_is_already_not_finite():
    """Otherwise divergence "restores" the inf it was given, and says it kept finite parameters."""
    net = mbtrain.Network([4, 3, 2], seed=0)
    net.params[5] = np.inf
    X, y = np.random.default_rng(0).random((20, 4)), np.arange(20) % 2
    with pytest.raises(ValueError, match=r"net: parameter 5 \(layer 0 weights\[1, 1\]\) is inf; a network "
                                         r"must hold finite parameters"):
        net.fit(X, y, epochs=1, batch_size=5, eta=1.0)
    assert not hasattr(net, "history")


def test_early_stopping_never_restores_non_finite_parameters():
    net = mbtrain.Network([4, 3, 2], seed=0)
    before = net.params.copy()
    stopper = mbtrain.EarlyStopping(patience=1)
    stopper._best_params = np.full_like(net.params, np.nan)
    assert stopper.finish(net) is False
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.filterwarnings("ignore:X. the inputs span:UserWarning")  # huge inputs are the point here
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_divergence_in_the_first_mini_batch_keeps_finite_parameters(backend):
    X = np.random.default_rng(0).random((40, 4)) * 1e30
    net = mbtrain.Network([4, 2], cost="cross_entropy", dtype="float32", seed=0)
    before = net.params.copy()
    with pytest.raises(mbtrain.TrainingDiverged) as info:
        net.fit(X, np.arange(40) % 2, epochs=2, batch_size=40, eta=1e10, backend=backend)
    assert info.value.batch == 0
    np.testing.assert_array_equal(net.params, before)


# -- 3. the checkpoint after early stopping ----------------------------------------------------

def test_checkpoint_holds_the_restored_best_epoch(tmp_path):
    from mbtrain.synthetic import make_blobs

    X, y = make_blobs(n_samples=500, n_features=10, n_classes=3, spread=1.2, seed=3)
    path = tmp_path / "model.npz"
    net = mbtrain.Network([10, 6, 3], seed=0)
    stopper = mbtrain.EarlyStopping(patience=2)
    # eta this large makes validation accuracy wander, so the last epoch is not the best
    history = net.fit(X[:400], y[:400], epochs=40, batch_size=4, eta=20.0, validation_data=(X[400:], y[400:]),
                      early_stopping=stopper, checkpoint=path)
    assert stopper.stopped_epoch is not None and stopper.best_epoch < history["epoch"].iloc[-1]
    on_disk = mbtrain.load(path)
    np.testing.assert_array_equal(on_disk.params, net.params)
    assert on_disk.score(X[400:], y[400:]) == stopper.best_accuracy
    assert list(on_disk.history["epoch"]) == list(history["epoch"])  # what ran, all of it


# -- 4. Fortran-order data and monitoring memory ---------------------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy", "loop"])
@pytest.mark.parametrize("progress", [False, True])
def test_fortran_order_X_trains_exactly_as_c_order(backend, progress):
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 12)), rng.integers(0, 3, 300)
    c, f = mbtrain.Network([12, 5, 3], seed=1), mbtrain.Network([12, 5, 3], seed=1)
    hc = c.fit(X, y, epochs=2, batch_size=7, eta=0.5, backend=backend, progress=progress)
    hf = f.fit(np.asfortranarray(X), y, epochs=2, batch_size=7, eta=0.5, backend=backend, progress=progress)
    np.testing.assert_array_equal(c.params, f.params)
    np.testing.assert_array_equal(hc["train_loss"], hf["train_loss"])


def test_fortran_order_memmap_is_gathered_not_copied(tmp_path, monkeypatch):
    """A 64 MiB Fortran-order memmap: rows are gathered a block at a time (a few MiB), not copied whole."""
    rows, features = 32768, 512
    path = tmp_path / "X.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, features), fortran_order=True)
    rng = np.random.default_rng(0)
    for start in range(0, features, 64):
        out[:, start:start + 64] = rng.random((rows, 64), dtype=np.float32)
    out.flush()
    del out
    X = np.load(path, mmap_mode="r")
    assert X.flags.f_contiguous and not X.flags.c_contiguous
    y = np.arange(rows) % 10
    monkeypatch.setattr(training, "_GATHER_BYTES", 4 * 2**20)
    net = mbtrain.Network([features, 8, 10], seed=0)
    reference = net.copy()
    net.fit(np.asarray(X[:256]), y[:256], epochs=1, batch_size=64, eta=0.1, monitor=False)  # compile first
    net = reference.copy()
    tracemalloc.start()
    try:
        net.fit(X, y, epochs=1, batch_size=64, eta=0.1, monitor=False, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"fit allocated {peak / 2**20:.0f} MiB for a 64 MiB file"
    reference.fit(np.ascontiguousarray(X), y, epochs=1, batch_size=64, eta=0.1, monitor=False)
    np.testing.assert_array_equal(net.params, reference.params)


@pytest.mark.filterwarnings("ignore:X. the inputs span:UserWarning")
def test_divergence_with_fortran_order_X_restores_the_same_parameters():
    rng = np.random.default_rng(2)
    X, y = rng.random((40, 4)) * 1e30, rng.integers(0, 2, 40)
    nets = []
    for data in (X, np.asfortranarray(X)):
        net = mbtrain.Network([4, 2], cost="cross_entropy", dtype="float32", seed=0)
        with pytest.raises(mbtrain.TrainingDiverged) as info:
            net.fit(data, y, epochs=3, batch_size=4, eta=1e10, seed=0)
        nets.append((net.params.copy(), info.value.batch))
    assert nets[0][1] == nets[1][1]
    np.testing.assert_array_equal(nets[0][0], nets[1][0])


def test_eval_chunk_rows_follows_the_layer_widths():
    assert base.eval_chunk_rows([784, 8000, 10], 4) == 317  # the network: not 8,192
    assert base.eval_chunk_rows([784, 30, 10], 4) == 3393
    assert base.eval_chunk_rows([784, 30, 10], 8) == 3393 // 2
    assert base.eval_chunk_rows([10**9, 10], 8) == 1  # always at least one row
    for sizes, itemsize in (([784, 8000, 10], 4), ([64, 30, 10], 8), ([5, 5000, 5000, 5], 4)):
        rows = base.eval_chunk_rows(sizes, itemsize)
        per_row = itemsize * base._EVAL_ARRAYS * sum(sizes)
        assert rows * per_row <= base.EVAL_BUDGET_BYTES < (rows + 1) * per_row


def test_evaluate_in_small_chunks_equals_one_pass(monkeypatch):
    rng = np.random.default_rng(0)
    net = mbtrain.Network([6, 5, 3], dtype="float64", seed=0)
    X, y = rng.random((50, 6)), rng.integers(0, 3, 50)
    one = training.evaluate(net, X, y, y, 0.3, 80, gradient_norms=True)
    monkeypatch.setattr(base, "EVAL_BUDGET_BYTES", 8 * base._EVAL_ARRAYS * sum(net.sizes) * 7)  # 7 rows
    chunked = training.evaluate(net, X, y, y, 0.3, 80, gradient_norms=True)
    assert chunked.loss == pytest.approx(one.loss, rel=1e-12)
    assert chunked.cost == pytest.approx(one.cost, rel=1e-12)
    assert chunked.accuracy == one.accuracy
    np.testing.assert_allclose(chunked.grad_norms, one.grad_norms, rtol=1e-12)


def test_monitoring_a_wide_layer_stays_bounded():
    """[64, 4000, 10] on 3,000 rows: one fixed 8,192-row chunk held every row's activations (~300 MiB)."""
    rng = np.random.default_rng(0)
    X, y = rng.random((3000, 64), dtype=np.float32), rng.integers(0, 10, 3000)
    net = mbtrain.Network([64, 4000, 10], cost="cross_entropy", init="scaled", seed=0)
    net.fit(X[:200], y[:200], epochs=1, batch_size=100, eta=0.1, monitor=False)  # compile outside the trace
    tracemalloc.start()
    try:
        history = net.fit(X, y, epochs=1, batch_size=100, eta=0.1, validation_data=(X[:500], y[:500]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(history["train_loss"]).all()
    # the budget (64 MiB) plus the weight-sized gradient sums (64 x 4000 float64: 2 MiB)
    assert peak < 96 * 2**20, f"monitoring peaked at {peak / 2**20:.0f} MiB"


# -- 7. inputs far outside [0, 1] ----------------------------------------------------------------

def test_fit_on_0_255_pixels_warns_once_with_the_range():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (200, 16)).astype(np.uint8)
    X[0, 0], X[0, 1] = 0, 255
    y = rng.integers(0, 3, 200)
    net = mbtrain.Network([16, 5, 3], seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.fit(X, y, epochs=2, batch_size=10, eta=0.5, validation_data=(X[:50], y[:50]))
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert caught[0].category is UserWarning
    assert "X: the inputs span [0, 255]" in message and "X / X.max()" in message and "MinMaxScaler" in message
    assert caught[0].filename == __file__  # points at the caller's fit line, not at mbtrain


@pytest.mark.parametrize("scaling", ["unit", "standardized"])
def test_scaled_inputs_do_not_warn(scaling):
    X, y, _, _ = mbtrain.datasets.load("digits", dtype="float64")
    if scaling == "standardized":  # rare pixels give values near 40, yet an RMS of 1: trains well, no warning
        X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1)
        assert X.max() > 10
    net = mbtrain.Network([64, 10, 10], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.fit(X[:300], y[:300], epochs=1, batch_size=10, eta=0.5)


def test_the_scale_is_measured_in_the_validating_pass(monkeypatch):
    """One scan of X checks NaN/inf and measures the range (a memmap is read once, not twice)."""
    X, y = np.random.default_rng(0).random((100, 4)) * 50, np.arange(100) % 2
    calls = []
    real = _validation.scan_rows
    monkeypatch.setattr(_validation, "scan_rows", lambda a, **kw: calls.append(a) or real(a, **kw))
    rms = f"{np.sqrt(np.mean(X**2)):.3g}"
    with pytest.warns(UserWarning, match=rf"X: the inputs span \[{X.min():.4g}, {X.max():.4g}\] \(root mean square {rms}\)"):
        mbtrain.Network([4, 3, 2], seed=0).fit(X, y, epochs=1, batch_size=10, eta=0.5, monitor=False)
    assert sum(a is X for a in calls) == 1


def test_scan_rows_finds_the_range_and_the_first_bad_row():
    a = np.asfortranarray(np.arange(-6.0, 6.0).reshape(4, 3))
    scan = _validation.scan_rows(a, value_range=True)
    assert (scan.bad_row, scan.low, scan.high) == (None, -6.0, 5.0)
    assert scan.rms == pytest.approx(np.sqrt(np.mean(a**2)))
    a[2, 1] = np.inf
    assert _validation.scan_rows(a, value_range=True).bad_row == 2
    assert _validation.scan_rows(np.arange(12, dtype=np.uint8).reshape(4, 3), value_range=True).high == 11


# -- 7. scikit-learn's names ------------------------------------------------------------------

sklearn = pytest.importorskip("sklearn")


def test_mbclassifier_on_unscaled_digits_warns():
    from sklearn.datasets import load_digits

    from mbtrain.sklearn import MBClassifier

    X, y = load_digits(return_X_y=True)
    with pytest.warns(UserWarning, match=r"X: the inputs span \[0, 16\].*MinMaxScaler"):
        MBClassifier(epochs=1, random_state=0).fit(X[:300], y[:300])


def test_max_iter_and_learning_rate_init_mean_epochs_and_eta():
    from sklearn.base import clone

    from mbtrain.sklearn import MBClassifier

    X, y = np.random.default_rng(0).random((60, 4)), np.arange(60) % 3
    by_sklearn_names = MBClassifier(max_iter=3, learning_rate_init=0.2, random_state=0).fit(X, y)
    by_mbtrain_names = MBClassifier(epochs=3, eta=0.2, random_state=0).fit(X, y)
    assert by_sklearn_names.n_iter_ == 3
    np.testing.assert_array_equal(by_sklearn_names.network_.params, by_mbtrain_names.network_.params)
    copy = clone(by_sklearn_names)
    assert copy.get_params()["max_iter"] == 3 and copy.get_params()["learning_rate_init"] == 0.2
    assert copy.set_params(max_iter=2).fit(X, y).n_iter_ == 2
    with pytest.raises(ValueError, match="max_iter=5 and epochs=10 are one setting under two names"):
        MBClassifier(epochs=10, max_iter=5).fit(X, y)
    with pytest.raises(TypeError, match="max_iter: must be an integer, got 2.5"):
        MBClassifier(max_iter=2.5).fit(X, y)


@pytest.mark.parametrize("name, value, points_to", [
    ("alpha", 1e-4, r"lmbda = alpha \* n / batch_size"),
    ("power_t", 0.5, r"'constant' or 'adaptive' \(the book's schedule\), not 'invscaling'"),
    ("max_fun", 15000, "network_.fit_full_batch runs L-BFGS"),
    ("tol", 1e-4, "n_iter_no_change"),
    ("activation", "relu", "always sigmoid"),
])
def test_sklearn_only_names_say_what_to_use(name, value, points_to):
    from mbtrain.sklearn import MBClassifier, MBRegressor

    for estimator in (MBClassifier, MBRegressor):
        with pytest.raises(TypeError, match=rf"{estimator.__name__}: '{name}' is scikit-learn's MLP parameter, "
                                            rf"not mbtrain's: .*{points_to}"):
            estimator(**{name: value})
        with pytest.raises(ValueError, match=points_to):
            estimator().set_params(**{name: value})
