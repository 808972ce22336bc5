"""Targets of a mini-batch from a target matrix or from integer labels.

``fit`` keeps integer labels as labels (8 bytes a row, or none at all for the
user's own array) instead of a one-hot matrix of the whole set; each backend
expands only its mini-batch.
"""
from __future__ import annotations

import numpy as np


def batch_targets(Y, rows, n_outputs: int, dtype) -> np.ndarray:
    """``(len(rows), n_outputs)`` targets: ``Y[rows]`` of a matrix, or the one-hot of labels ``Y[rows]``."""
    if Y.ndim == 2:
        return Y[rows]
    labels = Y[rows]
    out = np.zeros((len(labels), n_outputs), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


def row_labels(Y) -> np.ndarray:
    """Integer labels of a target matrix (its row argmax) or the labels themselves."""
    return Y if Y.ndim == 1 else Y.argmax(axis=1)
