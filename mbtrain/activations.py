"""Activation functions as plain numpy array functions.

These are the numpy-side definitions of the ``loop`` and ``numpy`` backends
(the numba backend's forward pass over a whole set is the numpy one too). The
kernels have their own jitted versions in :mod:`mbtrain.kernels` and
:mod:`mbtrain.fast_kernels`, tested against these.

Shapes: ``z`` is any array; the functions work elementwise (``sigmoid``) or
along the last axis (``softmax``, ``log_softmax``).
"""
from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-z))`` that never overflows.

    ``exp`` is only ever taken of ``-|z|``, so ``z = ±1000`` gives exactly 1 or
    0 without a warning, in float32 and float64. The result has ``z``'s dtype.
    """
    z = np.asarray(z)
    e = np.exp(-np.abs(z))
    r = 1 / (1 + e)
    return np.where(z >= 0, r, e * r).astype(z.dtype, copy=False)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise ``log(softmax(z))``, stable for any finite ``z``."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for any finite ``z``."""
    shifted = np.exp(z - z.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def softplus(z: np.ndarray) -> np.ndarray:
    """``log(1 + exp(z))`` without overflow: ``-log(sigmoid(-z))``."""
    return np.logaddexp(0, z).astype(np.asarray(z).dtype, copy=False)


def output_activation(cost, z: np.ndarray) -> np.ndarray:
    """The output layer's activation of ``z`` for ``cost``: softmax when ``cost.output_activation``
    is ``"softmax"``, the sigmoid otherwise (hidden layers are always sigmoid)."""
    return softmax(z) if cost.output_activation == "softmax" else sigmoid(z)
