"""A user's cost: a plain class with name/fn/delta registers, checks and trains on every backend."""
import warnings

import numpy as np
import pytest

import mbtrain
from mbtrain.costs import COSTS, CrossEntropyCost
from conftest import BACKEND_NAMES


class LogCosh:
    """A plain class, no Cost base: C = sum log cosh(a - y), sigmoid output."""

    name = "test_log_cosh"

    def fn(self, z, a, y):
        return np.log(np.cosh(a - y)).sum(axis=-1)

    def delta(self, z, a, y):
        return np.tanh(a - y) * a * (1 - a)


class SoftmaxBrier:
    """The Brier score on a softmax output: C = 1/2 ||a - y||^2, delta = J_softmax^T (a - y)."""

    name = "test_softmax_brier"
    output_activation = "softmax"

    def fn(self, z, a, y):
        return 0.5 * np.square(a - y).sum(axis=-1)

    def delta(self, z, a, y):
        r = a - y
        return a * (r - (a * r).sum(axis=-1, keepdims=True))


@pytest.fixture
def registered():
    """Register the two user costs for one test, and forget them (and their warnings) after."""
    from mbtrain.backends import numba_matrix

    classes = [mbtrain.register_cost(cls) for cls in (LogCosh, SoftmaxBrier)]
    yield classes
    for cls in classes:
        COSTS.pop(cls.name, None)
        numba_matrix._warned_costs.discard(cls.name)


def test_register_cost_takes_a_plain_class_and_fills_in_the_defaults(registered):
    assert COSTS["test_log_cosh"] is LogCosh
    assert LogCosh.output_activation == "sigmoid" and LogCosh.kernel_id is None
    for cost in ("test_log_cosh", LogCosh, LogCosh()):
        assert mbtrain.Network([3, 2, 2], cost=cost).cost.name == "test_log_cosh"


@pytest.mark.parametrize("cost", ["test_log_cosh", "test_softmax_brier"])
def test_a_user_cost_trains_to_the_same_weights_on_every_backend(registered, rng, cost):
    X = rng.random((53, 6))
    y = rng.integers(0, 3, size=53)
    start = mbtrain.Network([6, 5, 3], cost=cost, dtype="float64", seed=1).params
    params = {}
    for backend in BACKEND_NAMES:
        net = mbtrain.Network([6, 5, 3], cost=cost, dtype="float64", seed=1)
        if backend == "numba":
            with pytest.warns(UserWarning, match=f"backend 'numba': no fused kernel for cost '{cost}'; it runs "
                                                 "through the numpy backend's matrix path"):
                net.fit(X, y, epochs=1, batch_size=10, eta=3.0, lmbda=0.5, backend=backend, seed=2)
        else:
            net.fit(X, y, epochs=1, batch_size=10, eta=3.0, lmbda=0.5, backend=backend, seed=2)
        params[backend] = net.params.copy()
    assert not np.allclose(params["loop"], start)
    for backend in ("numpy", "numba"):
        np.testing.assert_allclose(params[backend], params["loop"], rtol=1e-9, atol=1e-12, err_msg=backend)


def test_the_numba_warning_is_said_once(registered, rng):
    X, y = rng.random((20, 4)), rng.integers(0, 2, size=20)
    net = mbtrain.Network([4, 3, 2], cost="test_log_cosh", dtype="float64", seed=0)
    with pytest.warns(UserWarning, match="no fused kernel"):
        net.fit(X, y, epochs=1, batch_size=5, eta=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.fit(X, y, epochs=1, batch_size=5, eta=1.0)
        net.gradients(X, y)


@pytest.mark.parametrize("cost", ["test_log_cosh", "test_softmax_brier"])
def test_a_user_cost_passes_gradcheck_on_every_backend(registered, rng, cost):
    net = mbtrain.Network([5, 4, 3], cost=cost, dtype="float64", seed=0)
    X, y = rng.random((6, 5)), rng.integers(0, 3, size=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's one warning
        for backend in BACKEND_NAMES:
            assert mbtrain.gradcheck(net, X, y, lmbda=0.3, n=20, backend=backend).ok, backend


def test_an_inherited_kernel_is_not_used_for_a_replaced_delta(rng):
    """A subclass of a built-in cost with its own delta must not run the built-in's fused kernel."""

    @mbtrain.register_cost
    class HalfCrossEntropy(CrossEntropyCost):
        name = "test_half_cross_entropy"

        def fn(self, z, a, y):
            return 0.5 * super().fn(z, a, y)

        def delta(self, z, a, y):
            return 0.5 * (a - y)

    try:
        assert HalfCrossEntropy.kernel_id is None and CrossEntropyCost.kernel_id == 1
        net = mbtrain.Network([5, 4, 3], cost="test_half_cross_entropy", dtype="float64", seed=0)
        X, y = rng.random((6, 5)), rng.integers(0, 3, size=6)
        with pytest.warns(UserWarning, match="no fused kernel"):
            assert mbtrain.gradcheck(net, X, y, backend="numba").ok
    finally:
        COSTS.pop("test_half_cross_entropy")


class NoDelta:
    name = "test_no_delta"

    def fn(self, z, a, y):
        return a.sum(axis=-1)


class BookSignature:
    name = "test_book_signature"

    def fn(self, a, y):  # network2.py's fn(a, y): mbtrain passes z too
        return a.sum(axis=-1)

    def delta(self, z, a, y):
        return a - y


class Nameless(mbtrain.Cost):
    def fn(self, z, a, y):
        return a.sum(axis=-1)

    def delta(self, z, a, y):
        return a - y


class Tanh(LogCosh):
    name = "test_tanh"
    output_activation = "tanh"


class ClaimsAKernel(LogCosh):
    name = "test_claims_a_kernel"
    kernel_id = 1


@pytest.mark.parametrize("cls, message", [
    (NoDelta, r"cost: NoDelta has no method delta; a cost class needs fn\(self, z, a, y\)"),
    (BookSignature, r"cost: BookSignature.fn must take \(self, z, a, y\) .* got fn\(self, a, y\)"),
    (Nameless, "cost: Nameless needs a class attribute name, a non-empty string such as 'nameless'"),
    (Tanh, r"cost: Tanh.output_activation must be one of \['sigmoid', 'softmax'\], got 'tanh'"),
    (ClaimsAKernel, "cost: ClaimsAKernel.kernel_id = 1, but the numba kernel 1 computes the delta of "
                    "'cross_entropy', not ClaimsAKernel's; leave kernel_id out"),
])
def test_a_class_that_is_not_a_cost_is_refused_naming_what_is_missing(cls, message):
    with pytest.raises(TypeError, match=message):
        mbtrain.register_cost(cls)
    assert getattr(cls, "name", "") not in COSTS
    with pytest.raises(TypeError, match=message):
        mbtrain.Network([3, 2, 2], cost=cls())


def test_an_unknown_name_is_not_among_the_names_offered():
    with pytest.raises(ValueError) as info:
        mbtrain.Network([3, 2, 2], cost="test_unregistered")
    message = str(info.value)
    assert message.startswith("cost: unknown cost 'test_unregistered'; choose one of [")
    assert "'test_unregistered'" not in message.partition("choose one of")[2]
