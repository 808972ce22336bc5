"""Cost functions: one shared interface, registered by name.

Every cost is a small class with

- ``output_activation``: ``"sigmoid"`` or ``"softmax"``, the activation of the
  output layer this cost is meant for;
- ``fn(z, a, y)``: the cost of each row, shape ``(m,)``;
- ``delta(z, a, y)``: the output error ``dC/dz`` of each row, shape ``(m, k)``
  (the book's BP1);
- ``kernel_id``: the integer the numba kernels use to select their fused
  version of ``delta``, or ``None`` (a user's cost): the numba backend then
  trains through the numpy backend's path, as fast as ``backend="numpy"``.

Shapes: ``z`` and ``a`` are the output layer's weighted input and activation,
``(m, k)``; ``y`` is the target matrix ``(m, k)``. A new cost is one class
decorated with :func:`register_cost`: a :class:`Cost` subclass or a plain class
with ``name``, ``fn`` and ``delta`` (``output_activation`` defaults to
``"sigmoid"``, ``kernel_id`` to ``None``).

``fn`` is computed from ``z`` where the formula in ``a`` would lose precision
(``log(a)`` of a saturated sigmoid), so gradient checks by central differences
stay accurate even for large weighted inputs.
"""
from __future__ import annotations

import inspect

import numpy as np

from ._kernel_api import CROSS_ENTROPY, QUADRATIC, SOFTMAX
from .activations import log_softmax, softplus

COSTS: dict[str, type] = {}
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")
#: kernel id -> the built-in cost whose ``delta`` the numba kernels fuse under that id
_KERNEL_COSTS: dict[int, type] = {}


def register_cost(cls: type) -> type:
    """Class decorator adding ``cls`` to :data:`COSTS` under ``cls.name``.

    ``cls`` may subclass :class:`Cost` or be any plain class with a string
    ``name`` and methods ``fn(z, a, y)`` and ``delta(z, a, y)``. What it does
    not set is filled in on the class: ``output_activation = "sigmoid"`` and
    ``kernel_id = None``. A cost without a kernel trains on every backend; the
    numba backend runs it through the numpy backend's epoch and says so once.

    Raises
    ------
    TypeError
        Naming what is missing or wrong: ``name``, ``fn``, ``delta`` (their
        arguments), ``output_activation`` or ``kernel_id``.
    """
    check_cost_class(cls)
    COSTS[cls.name] = cls
    return cls


def _builtin(cls: type) -> type:
    """Register one of mbtrain's own costs, whose ``kernel_id`` the numba kernels know."""
    if cls.kernel_id is not None:
        _KERNEL_COSTS[cls.kernel_id] = cls
    return register_cost(cls)


def _takes_z_a_y(method) -> bool:
    try:
        inspect.signature(method).bind(None, 0, 0, 0)  # self, z, a, y
    except TypeError:
        return False
    except ValueError:  # no signature to inspect (a builtin): trust it
        return True
    return True


def check_cost_class(cls: type) -> type:
    """Check that ``cls`` has what a cost needs and fill in the optional attributes.

    Returns ``cls``. An inherited ``kernel_id`` whose kernel would compute
    another cost's ``delta`` (a subclass of a built-in cost that overrides
    ``delta``) is reset to ``None`` on ``cls``: the fused kernel is for the
    built-in ``delta`` only.
    """
    label = getattr(cls, "__name__", repr(cls))
    if not isinstance(cls, type):
        raise TypeError(f"cost: expected a class with name, fn(z, a, y) and delta(z, a, y), got {cls!r}")
    # Cost's own fn/delta only raise NotImplementedError: a subclass must replace them
    missing = [attr for attr in ("fn", "delta") if not callable(getattr(cls, attr, None))
               or getattr(cls, attr) is getattr(Cost, attr)]
    if missing:
        raise TypeError(f"cost: {label} has no method {' or '.join(missing)}; a cost class needs "
                        "fn(self, z, a, y) -> (m,) costs and delta(self, z, a, y) -> (m, k) output errors")
    for attr in ("fn", "delta"):
        if not _takes_z_a_y(getattr(cls, attr)):
            raise TypeError(f"cost: {label}.{attr} must take (self, z, a, y) (z and a are the output layer's "
                            f"weighted input and activation, y the targets); got {attr}"
                            f"{inspect.signature(getattr(cls, attr))}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"cost: {label} needs a class attribute name, a non-empty string such as "
                        f"{label.lower()!r} (what Network(cost=...) accepts), got {name!r}")
    if not hasattr(cls, "output_activation"):
        cls.output_activation = "sigmoid"
    if cls.output_activation not in OUTPUT_ACTIVATIONS:
        raise TypeError(f"cost: {label}.output_activation must be one of {list(OUTPUT_ACTIVATIONS)}, "
                        f"got {cls.output_activation!r}")
    kernel_id = getattr(cls, "kernel_id", None)
    if kernel_id is None:
        cls.kernel_id = None
    elif _KERNEL_COSTS.get(kernel_id) is not cls:
        owner = _KERNEL_COSTS.get(kernel_id)
        fused = (owner is not None and cls.delta is owner.delta
                 and cls.output_activation == owner.output_activation)
        if not fused:
            if "kernel_id" in vars(cls):
                raise TypeError(
                    f"cost: {label}.kernel_id = {kernel_id!r}, but "
                    + (f"the numba kernel {kernel_id} computes the delta of {owner.name!r}, not {label}'s"
                       if owner is not None else f"no numba kernel has id {kernel_id!r}")
                    + "; leave kernel_id out and the numba backend trains this cost through the numpy path")
            cls.kernel_id = None  # inherited from a built-in cost whose delta this class replaces
    return cls


class Cost:
    """Interface of a cost; subclasses set ``name`` and implement ``fn``/``delta``."""

    name: str = ""
    output_activation: str = "sigmoid"
    kernel_id: int | None = None

    def fn(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def delta(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@_builtin
class QuadraticCost(Cost):
    """``C = 1/2 ||a - y||^2``; ``delta = (a - y) * sigma'(z)`` (book, chapter 2)."""

    name = "quadratic"
    kernel_id = QUADRATIC

    def fn(self, z, a, y):
        return 0.5 * np.square(a - y).sum(axis=-1)

    def delta(self, z, a, y):
        return (a - y) * a * (1 - a)


@_builtin
class CrossEntropyCost(Cost):
    """``C = -sum(y ln a + (1 - y) ln(1 - a))``; ``delta = a - y`` (book, chapter 3).

    ``ln a = -softplus(-z)`` and ``ln(1 - a) = -softplus(z)``: exact for saturated
    outputs, where the book needs ``np.nan_to_num``.
    """

    name = "cross_entropy"
    kernel_id = CROSS_ENTROPY

    def fn(self, z, a, y):
        return (y * softplus(-z) + (1 - y) * softplus(z)).sum(axis=-1)

    def delta(self, z, a, y):
        return a - y


@_builtin
class SoftmaxLogLikelihoodCost(Cost):
    """Softmax output with log-likelihood ``C = -sum(y ln a)`` (book, chapter 3).

    ``delta = a * sum(y) - y``, which is the book's ``a - y`` whenever the target
    rows sum to one (one-hot labels) and stays the exact gradient otherwise.
    """

    name = "softmax"
    output_activation = "softmax"
    kernel_id = SOFTMAX

    def fn(self, z, a, y):
        return -(y * log_softmax(z)).sum(axis=-1)

    def delta(self, z, a, y):
        return a * y.sum(axis=-1, keepdims=True) - y


def l2_penalty(weights, lmbda: float, n: int) -> float:
    """The book's L2 term of the loss, ``lmbda / (2 n) * sum_l ||W_l||^2`` (biases never), in float64.

    The one place mbtrain computes it: every backend's loss, the training
    history and the scipy objective call this.
    """
    if not lmbda:
        return 0.0
    return lmbda / (2 * n) * sum(float(np.sum(np.square(w, dtype=np.float64))) for w in weights)


#: mbtrain's own costs, each with a fused numba kernel
BUILTIN_COSTS = (QuadraticCost, CrossEntropyCost, SoftmaxLogLikelihoodCost)


def get_cost(cost) -> "Cost":
    """Return a cost instance from its registered name, a cost class or a cost instance.

    Classes and instances need not be registered or subclass :class:`Cost`;
    they are checked by :func:`check_cost_class` (a clear error names what is
    missing).
    """
    if isinstance(cost, str):
        if cost in COSTS:
            return COSTS[cost]()
        raise ValueError(f"cost: unknown cost {cost!r}; choose one of {sorted(COSTS)}, "
                         "or pass a cost class or instance (see mbtrain.register_cost)")
    if isinstance(cost, type):
        return check_cost_class(cost)()
    check_cost_class(type(cost))
    return cost
