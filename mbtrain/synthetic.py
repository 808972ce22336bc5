"""Small generated data sets for quick runs and tests (no files needed)."""
from __future__ import annotations

import numpy as np


def make_blobs(n_samples=1000, n_features=16, n_classes=4, spread=0.6, dtype="float32", seed=0):
    """Gaussian blobs squashed into [0, 1]: ``(X, y)`` with integer labels.

    Each class is a Gaussian around a random centre; ``spread`` is the standard
    deviation relative to the distance between centres, so larger is harder.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, n_features))
    y = rng.integers(0, n_classes, size=n_samples)
    X = centres[y] + spread * rng.standard_normal((n_samples, n_features))
    X = 1 / (1 + np.exp(-X))  # into (0, 1), like pixel intensities
    return X.astype(dtype), y.astype(np.int64)
