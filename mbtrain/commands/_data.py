"""Loading a data set for a subcommand, with the errors a person can act on."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .. import datasets
from ..datasets import book_split, train_validation_split
from ..synthetic import make_blobs

DATASET_CHOICES = datasets.COMMAND_DATASETS
FILE_DATASETS = ("fashion-mnist", "mnist")  # the ones read from files, so --data-dir applies


class Loaded(NamedTuple):
    """A data set's train and test rows and where they came from (``source``, for the output)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    source: str


def load_dataset(name: str, dtype: str, data_dir=None, n_features=None, n_classes=None, seed=0) -> Loaded:
    """A named data set or ``"synthetic"`` blobs, saying which files were read.

    Raises
    ------
    ValueError
        ``data_dir`` is given but is not a directory, or is given for a data set
        that is not read from files (an option is never silently ignored).
    OSError, ValueError
        As :func:`mbtrain.datasets.load`.
    """
    if data_dir is not None:
        if name not in FILE_DATASETS:
            what = "generated" if name == "synthetic" else "the copy shipped with mbtrain"
            raise ValueError(f"--data-dir: {name} is {what}, not read from files; "
                             f"--data-dir applies to {' and '.join(FILE_DATASETS)}")
        if not Path(data_dir).is_dir():
            raise ValueError(f"--data-dir: {data_dir} is not a directory")
    if name == "synthetic":
        X, y = make_blobs(n_samples=2500, n_features=n_features or 16, n_classes=n_classes or 4,
                          dtype=dtype, seed=seed)
        return Loaded(X[:2000], y[:2000], X[2000:], y[2000:], f"generated blobs (seed {seed})")

    if name not in FILE_DATASETS:
        return Loaded(*datasets.load(name, dtype=dtype), "the copy shipped with mbtrain")
    # load() searches the same directories again: looking first tells the user which copy is read
    # (the search path has four places and an explicit --data-dir is only the first of them).
    found = datasets.locate(name, data_dir)
    parts = datasets.load(name, dtype=dtype, data_dir=data_dir)
    if found is None:
        source = f"{datasets.cache_dir(name)} (downloaded)"
    else:
        source = str(found["train_images"].parent)
    if data_dir is not None and (found is None or Path(source).resolve() != Path(data_dir).resolve()):
        source += f" (not in --data-dir {data_dir}, which does not hold the four files)"
    return Loaded(*parts, source)


def resolve_sizes(given, n_features: int, n_classes: int, hidden=(30,), dataset="the data") -> tuple[list[int], str]:
    """The layer widths a command uses, and how they were chosen (for its output).

    One policy for every command: explicitly given sizes must fit the data
    (input width = its features, output width = its classes), or it is an
    error; only the default (``hidden`` between the data's widths) adapts.

    Parameters
    ----------
    given : list of int or None
        ``--sizes`` as parsed; None when the option was not given.
    n_features, n_classes : int
        The data's width and number of classes (largest label + 1).

    Returns
    -------
    sizes : list of int
    how : str
        ``"given"`` or a phrase saying the default was derived from the data.

    Raises
    ------
    ValueError
        Given sizes that do not fit, naming ``--sizes`` and what the data needs.
    """
    if given is None:
        sizes = [int(n_features), *hidden, int(n_classes)]
        return sizes, f"default for {dataset}: {n_features} inputs, {n_classes} classes"
    sizes = list(given)
    if sizes[0] != n_features:
        raise ValueError(f"--sizes: the input width is {sizes[0]} but {dataset} rows have {n_features} "
                         f"features; use {','.join(map(str, [n_features, *sizes[1:]]))} or leave --sizes out")
    if sizes[-1] != n_classes:
        raise ValueError(f"--sizes: the output width is {sizes[-1]} but {dataset} has {n_classes} classes; "
                         f"use {','.join(map(str, [*sizes[:-1], n_classes]))} or leave --sizes out")
    return sizes, "given"


def validation_split(X, y, spec: str, seed: int):
    """Split off validation rows: ``"0"`` none, ``"book"`` the last 10,000, a count, or a fraction."""
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
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    index = pd.Index(range(n_classes), name="true")
    columns = pd.Index(range(n_classes), name="predicted")
    return pd.DataFrame(counts, index=index, columns=columns)
