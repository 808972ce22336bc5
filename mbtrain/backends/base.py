"""The backend protocol: every piece of maths a caller needs, in one interface.

A backend owns the arithmetic of a network: the forward pass, the loss and its
exact gradient over a batch, and an SGD epoch. Callers (``Network``, the
training driver, ``optimize``, ``gradcheck``, the scikit-learn layer, the
benchmarks) hold a :class:`Backend` and ask it; none of them asks which one it
holds. The network itself is data (sizes, cost, layout, parameters, random
stream).

Shapes: ``X`` ``(m, n_0)`` rows of the network's dtype (float64 networks may be
given float32 rows); ``Y`` integer labels ``(m,)`` or a target matrix
``(m, n_L)``; ``order`` ``(n_rows,)`` int64 row indices; gradients are flat, in
the layout of :class:`mbtrain.params.ParameterLayout`.

A subclass implements :meth:`output`, :meth:`loss_gradient` and
:meth:`sgd_epoch`; the rest has a default here that it may override where it
can do better (the numba backend compiles in :meth:`prepare` and keeps BLAS off
its cores in :meth:`training_context`).
"""
from __future__ import annotations

import abc
import contextlib

import numpy as np

from ..costs import l2_penalty
from ._targets import batch_targets

#: The epoch finished and every parameter is finite (:meth:`Backend.sgd_epoch`).
FINITE = -1

_EVAL_BYTES = 64 * 2**20  # work space of one chunk of rows when evaluating a whole set


def evaluation_chunk_rows(sizes, itemsize: int, budget_bytes: int = _EVAL_BYTES) -> int:
    """Rows per chunk when evaluating a set: the activations of every layer fit in ``budget_bytes``."""
    per_row = itemsize * sum(sizes) * 3  # z, a and a backward delta per unit
    return max(1, budget_bytes // per_row)


class Backend(abc.ABC):
    """The maths of one implementation (``loop``, ``numpy``, ``numba``).

    ``net`` is a :class:`mbtrain.Network` (any object with its attributes:
    ``sizes``, ``cost``, ``dtype``, ``layout``, ``params``, ``weights``,
    ``biases``). Arguments arrive checked: the public boundary validates them.
    """

    name: str = ""

    # -- the maths --------------------------------------------------------
    @abc.abstractmethod
    def output(self, net, X) -> tuple[np.ndarray, np.ndarray]:
        """``(z, a)``: the output layer's weighted input and activation, each ``(m, n_L)``."""

    @abc.abstractmethod
    def loss_gradient(self, net, X, Y, lmbda: float, n: int) -> np.ndarray:
        """The exact gradient of :meth:`loss` (same arguments), flat, in the network's dtype."""

    @abc.abstractmethod
    def sgd_epoch(self, net, X, Y, order, batch_size: int, eta: float, lmbda: float, n: int) -> int:
        """One epoch of mini-batch SGD over the rows ``X[order]``, updating ``net.params`` in place.

        The book's rule ``w <- (1 - eta*lmbda/n) w - (eta/m) sum grad C_x`` (the
        last short batch is used). Returns :data:`FINITE`, or the index of the
        first mini-batch after which a parameter was no longer finite (the
        caller restores and reports, see :mod:`mbtrain.training`).
        """

    def loss(self, net, X, Y, lmbda: float = 0.0, n: int | None = None) -> float:
        """Mean cost over the rows plus the L2 term ``lmbda / (2 n) * sum ||W||^2``."""
        z, a = self.output(net, X)
        Y = batch_targets(Y, slice(None), net.sizes[-1], net.dtype)
        cost = float(np.mean(net.cost.fn(z, a, Y), dtype=np.float64))
        return cost + l2_penalty(net.weights, lmbda, X.shape[0] if n is None else n)

    def loss_and_gradient(self, net, X, Y, lmbda: float, n: int) -> tuple[float, np.ndarray]:
        """``(loss, gradient)`` at the current parameters, as an optimizer wants them."""
        return self.loss(net, X, Y, lmbda, n), self.loss_gradient(net, X, Y, lmbda, n)

    def evaluate(self, net, X, Y, labels, lmbda: float, n: int, gradient_norms: bool = False):
        """Cost, loss, accuracy and, optionally, the norm of each layer's gradient over a whole set.

        In chunks of rows sized from the widest layers, so memory stays bounded
        whatever the set and the network. Returns ``(cost, loss, accuracy,
        norms)``: ``cost`` is the mean cost, ``loss`` adds the L2 term (what
        ``fit`` minimises), ``norms`` the Frobenius norm of ``dloss/dW_l`` per
        layer (or None).
        """
        m = X.shape[0]
        chunk = evaluation_chunk_rows(net.sizes, net.dtype.itemsize)
        total_cost, correct = 0.0, 0
        grad_sum = np.zeros(net.layout.size, dtype=np.float64) if gradient_norms else None
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported, not warned about
            for start in range(0, m, chunk):
                rows = slice(start, min(start + chunk, m))
                z, a = self.output(net, X[rows])
                Y_chunk = batch_targets(Y, rows, net.sizes[-1], net.dtype)
                total_cost += float(np.sum(net.cost.fn(z, a, Y_chunk), dtype=np.float64))
                correct += int(np.count_nonzero(a.argmax(axis=1) == labels[rows]))
                if gradient_norms:
                    rows_in_chunk = a.shape[0]
                    grad_sum += rows_in_chunk * self.loss_gradient(net, X[rows], Y_chunk, 0.0, 1)
        cost = total_cost / m
        loss = cost + l2_penalty(net.weights, lmbda, n)
        norms = None
        if gradient_norms:
            grad_w, _ = net.layout.views(grad_sum / m)
            norms = [float(np.linalg.norm(g + (lmbda / n) * w)) for g, w in zip(grad_w, net.weights)]
        return cost, loss, correct / m, norms

    # -- hooks of the training driver ---------------------------------------
    def prepare(self, net, batch_size: int, Y=None, X=None) -> float:
        """Compile what a fit of ``net`` at ``batch_size`` will run; returns the seconds it took.

        ``fit`` reports them apart from the epochs' times. Nothing to do here.
        """
        return 0.0

    def compile(self, dtype="float32", cost="quadratic") -> float:
        """Compile every kernel a run in ``dtype`` with ``cost`` may use (benchmarks, worker processes)."""
        return 0.0

    def training_context(self):
        """A context manager entered around a whole ``fit``; nothing by default."""
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
