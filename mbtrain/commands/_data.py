"""Loading a data set for a subcommand, with the errors a person can act on."""
from __future__ import annotations

import numpy as np

DATASET_CHOICES = ("digits", "fashion-mnist", "mnist", "synthetic")


def load_dataset(name: str, dtype: str, data_dir=None, n_features=None, n_classes=None, seed=0):
    """``(X_train, y_train, X_test, y_test)`` for a named data set or ``"synthetic"`` blobs."""
    if name == "synthetic":
        from ..synthetic import make_blobs

        X, y = make_blobs(n_samples=2500, n_features=n_features or 16, n_classes=n_classes or 4,
                          dtype=dtype, seed=seed)
        return X[:2000], y[:2000], X[2000:], y[2000:]
    from .. import datasets

    return datasets.load(name, dtype=dtype, data_dir=data_dir)


def validation_split(X, y, spec: str, seed: int):
    """Split off validation rows: ``"0"`` none, ``"book"`` the last 10,000, a count, or a fraction."""
    from ..datasets import book_split, train_validation_split

    if spec in ("0", "none"):
        return X, y, None
    if spec == "book":
        X_train, y_train, X_val, y_val = book_split(X, y)
        return X_train, y_train, (X_val, y_val)
    value = float(spec)
    n_validation = int(value) if value >= 1 else value
    X_train, y_train, X_val, y_val = train_validation_split(X, y, n_validation=n_validation, seed=seed)
    return X_train, y_train, (X_val, y_val)


def confusion_matrix(y_true, y_pred, n_classes: int):
    """Counts, rows = true class, columns = predicted class, as a labelled DataFrame."""
    import pandas as pd

    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    index = pd.Index(range(n_classes), name="true")
    columns = pd.Index(range(n_classes), name="predicted")
    return pd.DataFrame(counts, index=index, columns=columns)
