"""Backends: three implementations of the same maths, behind one protocol.

:class:`~mbtrain.backends.base.Backend` declares what every caller needs: the
output layer's ``(z, a)``, the loss and its exact gradient over a batch, an SGD
epoch, a whole-set evaluation, and the hooks of the training driver
(``prepare``, ``compile``, ``epoch_inputs``, ``training_context``). ``loop`` is the per-example
reference (the oracle), ``numpy`` the plain matrix-based version, ``numba`` the
fast one and the default. A caller gets one with :func:`get_backend` and asks
it; no module outside this package asks which backend it holds.
"""
from __future__ import annotations

from .base import FINITE, Backend, Evaluation, eval_chunk_rows
from .loop import LoopBackend
from .numba_matrix import NumbaBackend
from .numpy_matrix import NumpyBackend

BACKENDS = {
    "loop": LoopBackend(),
    "numpy": NumpyBackend(),
    "numba": NumbaBackend(),
}
DEFAULT_BACKEND = "numba"


def get_backend(name) -> Backend:
    """Return the backend registered under ``name`` (a :class:`Backend` instance is returned as it is)."""
    if isinstance(name, Backend):
        return name
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"backend: unknown backend {name!r}; choose one of {sorted(BACKENDS)}") from None


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "FINITE", "Backend", "Evaluation", "LoopBackend", "NumbaBackend",
           "NumpyBackend", "eval_chunk_rows", "get_backend"]
