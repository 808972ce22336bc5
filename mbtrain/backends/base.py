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
its cores in :meth:`training_context`). The default :meth:`optimizer_epoch`
steps :func:`mbtrain.optim.apply_step` on the backend's own
:meth:`loss_gradient` of each mini-batch: right for every backend, with one
Python step per mini-batch.
"""
from __future__ import annotations

import abc
import contextlib
from typing import NamedTuple

import numpy as np

from ..costs import l2_penalty
from ..optim import SGD_KIND, apply_step
from ._targets import batch_targets

#: The epoch finished and every parameter is finite (:meth:`Backend.sgd_epoch`, :meth:`Backend.optimizer_epoch`).
FINITE = -1

EVAL_BUDGET_BYTES = 64 * 2**20  # work space of one evaluation pass over a chunk of rows, about
_EVAL_ARRAYS = 6  # per unit and row in a pass: z, a, delta and the temporaries of sigmoid and backward


class Evaluation(NamedTuple):
    """What :meth:`Backend.evaluate` measured over a set of rows."""

    loss: float  #: mean cost plus the L2 term, as :meth:`Network.loss` with ``lmbda``: what fit minimises
    accuracy: float
    grad_norms: list[float] | None  #: per layer ``||dloss/dW_l||``, when asked for
    cost: float  #: mean cost alone, no L2 term: :meth:`Network.loss` with ``lmbda=0``


def eval_chunk_rows(sizes, itemsize: int, budget_bytes: int | None = None) -> int:
    """Rows per evaluation pass so that its work space stays near ``budget_bytes``.

    A pass holds a few arrays of every layer's width per row (z, a, delta and
    temporaries), so the row count follows from the sum of the widths: a
    ``[784, 8000, 10]`` float32 network evaluates 317 rows at a time, the
    book's ``[784, 30, 10]`` 3,393 (measured: a ``[64, 4000, 10]`` pass peaks at
    58 MiB of numpy allocations, the weight-sized gradient sums included).
    """
    budget = EVAL_BUDGET_BYTES if budget_bytes is None else budget_bytes
    return max(1, int(budget) // (int(itemsize) * _EVAL_ARRAYS * sum(sizes)))


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

    @np.errstate(over="ignore", invalid="ignore")  # divergence is detected and reported by the caller
    def optimizer_epoch(self, net, X, Y, order, batch_size: int, eta: float, lmbda: float, n: int,
                        optimizer, state) -> int:
        """One epoch of ``optimizer`` over the rows ``X[order]``: ``net.params`` and ``state`` in place.

        ``optimizer`` an :class:`mbtrain.optim.Optimizer`, ``state`` its
        :class:`~mbtrain.optim.OptimizerState` for ``net`` (None for SGD). Each
        mini-batch's step uses ``g``, the gradient of :meth:`loss` over its
        rows with ``lmbda`` and ``n`` (the last short batch is used). SGD is
        :meth:`sgd_epoch`, bit for bit. Returns :data:`FINITE`, or the index of
        the first mini-batch after which a parameter or a value of the state
        was no longer finite (the caller restores both and reports).

        A backend with a fused kernel overrides this; the default here runs
        :func:`mbtrain.optim.apply_step` on :meth:`loss_gradient` per mini-batch.
        """
        if optimizer.kind_id == SGD_KIND:
            return self.sgd_epoch(net, X, Y, order, batch_size, eta, lmbda, n)
        for k, start in enumerate(range(0, len(order), batch_size)):
            rows = order[start:start + batch_size]
            grad = self.loss_gradient(net, X[rows], batch_targets(Y, rows, net.sizes[-1], net.dtype), lmbda, n)
            apply_step(optimizer, state, net.params, grad, eta)
            if not np.isfinite(net.params).all() or state.first_nonfinite() is not None:
                return k
        return FINITE

    def loss(self, net, X, Y, lmbda: float = 0.0, n: int | None = None) -> float:
        """Mean cost over the rows plus the L2 term ``lmbda / (2 n) * sum ||W||^2``."""
        z, a = self.output(net, X)
        Y = batch_targets(Y, slice(None), net.sizes[-1], net.dtype)
        cost = float(np.mean(net.cost.fn(z, a, Y), dtype=np.float64))
        return cost + l2_penalty(net.weights, lmbda, X.shape[0] if n is None else n)

    def loss_and_gradient(self, net, X, Y, lmbda: float, n: int) -> tuple[float, np.ndarray]:
        """``(loss, gradient)`` at the current parameters, as an optimizer wants them."""
        return self.loss(net, X, Y, lmbda, n), self.loss_gradient(net, X, Y, lmbda, n)

    def evaluate(self, net, X, Y, labels, lmbda: float, n: int, gradient_norms: bool = False) -> Evaluation:
        """Loss, cost, accuracy and, optionally, the norm of each layer's gradient over a whole set.

        ``Y`` integer labels or a target matrix, ``labels`` integer labels. In
        chunks of rows sized by :func:`eval_chunk_rows`, so memory stays bounded
        whatever the set and the layer widths. The gradient is that of the loss
        over all rows: ``||dC/dW_l||`` per layer (Frobenius norm, L2 term
        included); a hidden-delta bug shows as norms that grow layer after layer
        towards the input.
        """
        m = X.shape[0]
        chunk = eval_chunk_rows(net.sizes, net.dtype.itemsize)
        total_cost, correct = 0.0, 0
        grad_sum = np.zeros(net.layout.size, dtype=np.float64) if gradient_norms else None
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported, not warned about
            for start in range(0, m, chunk):
                rows = slice(start, min(start + chunk, m))
                z, a = self.output(net, X[rows])
                Y_chunk = batch_targets(Y, rows, net.sizes[-1], net.dtype)
                total_cost += float(np.sum(net.cost.fn(z, a, Y_chunk), dtype=np.float64))
                correct += int(np.count_nonzero(a.argmax(axis=1) == labels[rows]))
                if gradient_norms:  # the mean gradient of the chunk's cost, weighted by its rows
                    grad_sum += a.shape[0] * self.loss_gradient(net, X[rows], Y_chunk, 0.0, 1)
                del z, a, Y_chunk  # before the next chunk's arrays exist, not after
            cost = total_cost / m
            norms = None
            if gradient_norms:
                grad_sum /= m
                grad_w, _ = net.layout.views(grad_sum)
                norms = [float(np.linalg.norm(g + (lmbda / n) * w if lmbda else g))
                         for g, w in zip(grad_w, net.weights)]
        return Evaluation(cost + l2_penalty(net.weights, lmbda, n), correct / m, norms, cost)

    # -- hooks of the training driver ---------------------------------------
    def prepare(self, net, batch_size: int, Y=None, X=None, optimizer=None) -> float:
        """Compile what a fit of ``net`` at ``batch_size`` with ``optimizer`` (None: SGD) will run; returns seconds.

        ``fit`` reports them apart from the epochs' times. Nothing to do here.
        """
        return 0.0

    def compile(self, dtype="float32", cost="quadratic", batch_sizes=None, optimizers=None,
                gradient=None) -> float:
        """Compile the kernels a run in ``dtype`` with ``cost`` will use: its ``batch_sizes``, ``optimizers``
        and, with ``gradient``, the gradient; with no arguments everything it may use. Returns seconds
        (benchmarks and worker processes report them apart from run time). Nothing to do here."""
        return 0.0

    def epoch_inputs(self, net, X):
        """``X`` as this backend's epochs read it best, made once per ``fit``; ``X`` itself by default.

        ``fit`` passes the result to :meth:`sgd_epoch` and :meth:`optimizer_epoch`
        (never to the other methods), so a backend may return another object
        here, which only its own epochs need to understand.
        """
        return X

    def training_context(self):
        """A context manager entered around a whole ``fit``; nothing by default."""
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
