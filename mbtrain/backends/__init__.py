"""Backends: three implementations of the same maths, selected by name.

Each backend provides

- ``loss_gradient(net, X, Y, lmbda, n) -> flat gradient`` in the layout of
  :class:`mbtrain.params.ParameterLayout`, the exact gradient of
  :meth:`mbtrain.Network.loss`;
- ``sgd_epoch(net, X, Y, order, batch_size, eta, lmbda, n) -> int``: one epoch of
  mini-batch SGD over the rows ``X[order]``, updating ``net`` in place with the
  book's rule ``w <- (1 - eta*lmbda/n) w - (eta/m) sum grad C_x``. It returns the
  index of the first mini-batch after which a parameter was no longer finite,
  or ``-1``; the caller restores and reports (see :mod:`mbtrain.training`).

Optional hooks, used by :func:`mbtrain.training.fit` when present:
``prepare(net, batch_size, Y=None, X=None) -> seconds`` compiles what the fit
will run (reported apart from epoch times), and ``training_context()`` is
entered around the whole fit (the numba backend keeps BLAS on one thread).

``loop`` is the per-example reference (the oracle), ``numpy`` the plain
matrix-based version, ``numba`` the fast one and the default.
"""
from __future__ import annotations

from .loop import LoopBackend
from .numpy_matrix import NumpyBackend
from .numba_matrix import NumbaBackend

BACKENDS = {
    "loop": LoopBackend(),
    "numpy": NumpyBackend(),
    "numba": NumbaBackend(),
}
DEFAULT_BACKEND = "numba"


def get_backend(name: str):
    """Return the backend registered under ``name``."""
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"backend: unknown backend {name!r}; choose one of {sorted(BACKENDS)}") from None


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "get_backend", "LoopBackend", "NumpyBackend", "NumbaBackend"]
