"""The data a benchmark or sweep runs on, and the network sizes that fit it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATASETS = ("auto", "digits", "fashion-mnist", "mnist", "synthetic")


@dataclass
class BenchData:
    """Training and validation rows of one data set.

    ``note`` says where the rows came from (and what was subsampled), for the report.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    note: str = ""

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max() if len(self.y_val) else 0)) + 1


def _load_named(name, dtype, download=True):
    """``(X_train, y_train, note)`` of a named data set (its test rows are never used here)."""
    if name == "synthetic":
        from ..synthetic import make_blobs

        X, y = make_blobs(n_samples=1200, n_features=64, n_classes=10, spread=1.2, dtype=dtype, seed=0)
        return X, y, "synthetic blobs (mbtrain.synthetic.make_blobs: 1200 rows, 64 features, 10 classes)"
    from .. import datasets

    X_train, y_train, _, _ = datasets.load(name, dtype=dtype, download=download)
    return X_train, y_train, f"{name} training split (mbtrain.datasets.load; test split unused)"


def load_data(name="auto", dtype="float32", train_rows=None, validation_fraction=1 / 6, seed=0) -> BenchData:
    """Load ``name`` and hold out a validation part of its training rows.

    Parameters
    ----------
    name : {"auto", "digits", "fashion-mnist", "mnist", "synthetic"}
        ``"auto"``: Fashion-MNIST when a local copy exists (never downloaded),
        else the digits shipped with mbtrain.
    train_rows : int or None
        Keep only this many training rows (a seeded random subset), after the split.
    validation_fraction : float
        Share of the training rows held out for validation (1/6: MNIST's 50 000 / 10 000).
    seed : int
        Seeds the split (:func:`mbtrain.datasets.train_validation_split`) and the subset.
    """
    from ..datasets import train_validation_split

    if name not in DATASETS:
        raise ValueError(f"--dataset: unknown data set {name!r}; choose one of {list(DATASETS)}")
    if name == "auto":
        try:
            X, y, note = _load_named("fashion-mnist", dtype, download=False)
            name = "fashion-mnist"
        except (OSError, ValueError) as exc:  # no local copy, or a damaged one: use the shipped set
            X, y, note = _load_named("digits", dtype)
            name = "digits"
            note += f" (Fashion-MNIST not used: {exc})"
    else:
        X, y, note = _load_named(name, dtype)
    X_train, y_train, X_val, y_val = train_validation_split(
        np.ascontiguousarray(X, dtype=dtype), np.asarray(y, dtype=np.int64), validation_fraction, seed=seed)
    if train_rows is not None and train_rows < len(y_train):
        keep = np.sort(np.random.default_rng(seed).permutation(len(y_train))[:train_rows])
        note += f"; a random subset of {train_rows} of its {len(y_train)} training rows"
        X_train, y_train = X_train[keep], y_train[keep]
    note += f"; {len(y_train)} training rows, {len(y_val)} validation rows held out of the training split"
    return BenchData(name, X_train, y_train, X_val, y_val, note)


def fit_sizes(sizes, data: BenchData) -> tuple[list[int], str]:
    """``sizes`` with the first and last width set to the data's features and classes.

    Returns the sizes and a note saying what was changed ("" when nothing was).
    """
    sizes = list(sizes)
    fitted = [data.n_features] + sizes[1:-1] + [data.n_classes]
    if fitted == sizes:
        return sizes, ""
    return fitted, (f"sizes {','.join(map(str, sizes))} do not match {data.name} "
                    f"({data.n_features} inputs, {data.n_classes} classes): using {','.join(map(str, fitted))}")
