"""Cost functions: one shared interface, registered by name.

Every cost is a small class with

- ``output_activation``: ``"sigmoid"`` or ``"softmax"``, the activation of the
  output layer this cost is meant for;
- ``fn(z, a, y)``: the cost of each row, shape ``(m,)``;
- ``delta(z, a, y)``: the output error ``dC/dz`` of each row, shape ``(m, k)``
  (the book's BP1);
- ``kernel_id``: the integer the numba kernels use to select their fused
  version of ``delta``, or ``None`` for a cost only the ``loop`` and ``numpy``
  backends know.

Shapes: ``z`` and ``a`` are the output layer's weighted input and activation,
``(m, k)``; ``y`` is the target matrix ``(m, k)``. A new cost is one class
decorated with :func:`register_cost`.

``fn`` is computed from ``z`` where the formula in ``a`` would lose precision
(``log(a)`` of a saturated sigmoid), so gradient checks by central differences
stay accurate even for large weighted inputs.
"""
from __future__ import annotations

import numpy as np

from ._kernel_api import CROSS_ENTROPY, QUADRATIC, SOFTMAX
from .activations import log_softmax, softplus

COSTS: dict[str, type["Cost"]] = {}


def register_cost(cls: type["Cost"]) -> type["Cost"]:
    """Class decorator adding ``cls`` to :data:`COSTS` under ``cls.name``."""
    COSTS[cls.name] = cls
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


@register_cost
class QuadraticCost(Cost):
    """``C = 1/2 ||a - y||^2``; ``delta = (a - y) * sigma'(z)`` (book, chapter 2)."""

    name = "quadratic"
    kernel_id = QUADRATIC

    def fn(self, z, a, y):
        return 0.5 * np.square(a - y).sum(axis=-1)

    def delta(self, z, a, y):
        return (a - y) * a * (1 - a)


@register_cost
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


@register_cost
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


def get_cost(cost: "str | Cost") -> Cost:
    """Return a cost instance from its registered name or an instance."""
    if isinstance(cost, Cost):
        return cost
    if isinstance(cost, type) and issubclass(cost, Cost):
        return cost()
    if isinstance(cost, str) and cost in COSTS:
        return COSTS[cost]()
    raise ValueError(
        f"cost: unknown cost {cost!r}; choose one of {sorted(COSTS)} "
        "or pass a Cost instance"
    )
