"""The data a benchmark or sweep runs on, and the network sizes that fit it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import datasets
from ..datasets import train_validation_split
from ..synthetic import make_blobs

DATASETS = ("auto", *datasets.COMMAND_DATASETS)  # "auto": Fashion-MNIST when it is here, else digits


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


def _load_named(name, dtype, data_dir=None, download=True):
    """``(X_train, y_train, note)`` of a named data set (its test rows are never used here).

    The note names the files the rows were read from.
    """
    if name == "synthetic":
        X, y = make_blobs(n_samples=1200, n_features=64, n_classes=10, spread=1.2, dtype=dtype, seed=0)
        return X, y, "synthetic blobs (mbtrain.synthetic.make_blobs: 1200 rows, 64 features, 10 classes)"

    X_train, y_train, _, _ = datasets.load(name, dtype=dtype, data_dir=data_dir, download=download)
    if name == "digits":
        return X_train, y_train, ("digits training split (shipped with mbtrain: mbtrain/data/digits.npz; "
                                  "test split unused)")
    files = datasets.locate(name, data_dir) or {}
    read = " and ".join(str(files[role]) for role in ("train_images", "train_labels") if role in files)
    return X_train, y_train, f"{name} training split, read from {read or '?'} (test split unused)"


def check_data_dir(name, data_dir):
    """Refuse a ``--data-dir`` that does not exist, does not hold ``name``'s files, or that ``name`` would not read.

    A directory given explicitly is never passed over for another copy found elsewhere.
    """
    if data_dir is None:
        return
    if not Path(data_dir).is_dir():
        raise ValueError(f"--data-dir: {data_dir} is not a directory")
    if name in ("digits", "synthetic"):
        raise ValueError(f"--data-dir: the {name} data set is not read from files (digits are shipped with "
                         f"mbtrain, synthetic blobs are generated); --data-dir is for fashion-mnist and mnist")

    key = "fashion-mnist" if name == "auto" else name
    files = datasets.locate(key, data_dir)  # raises when the directory holds only some of the files
    if files is None or Path(files["train_images"]).parent.resolve() != Path(data_dir).resolve():
        raise FileNotFoundError(f"--data-dir: {data_dir} does not hold the {key} IDX files "
                                f"(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                                f"t10k-labels-idx1-ubyte, each plain or .gz)")


def load_data(name="auto", dtype="float32", train_rows=None, validation_fraction=1 / 6, seed=0,
              data_dir=None) -> BenchData:
    """Load ``name`` and hold out a validation part of its training rows.

    Parameters
    ----------
    name : {"auto", "digits", "fashion-mnist", "mnist", "synthetic"}
        ``"auto"``: Fashion-MNIST when a local copy exists (never downloaded),
        else the digits shipped with mbtrain; with ``data_dir``, Fashion-MNIST
        or an error (a directory given is never silently passed over).
    train_rows : int or None
        Keep only this many training rows (a seeded random subset), after the split.
    validation_fraction : float
        Share of the training rows held out for validation (1/6: MNIST's 50 000 / 10 000).
    seed : int
        Seeds the split (:func:`mbtrain.datasets.train_validation_split`) and the subset.
    data_dir : str or Path or None
        Searched first for the IDX files (see :func:`mbtrain.datasets.load`);
        it must exist, and only fashion-mnist and mnist read it.

    Raises
    ------
    ValueError
        An unknown name, a ``data_dir`` that does not exist or does not apply,
        or a damaged file (the message names it).
    """
    if name not in DATASETS:
        raise ValueError(f"--dataset: unknown data set {name!r}; choose one of {list(DATASETS)}")
    check_data_dir(name, data_dir)
    if name == "auto" and data_dir is not None:
        X, y, note = _load_named("fashion-mnist", dtype, data_dir, download=False)
        name = "fashion-mnist"
    elif name == "auto":
        try:
            X, y, note = _load_named("fashion-mnist", dtype, download=False)
            name = "fashion-mnist"
        except (OSError, ValueError) as exc:  # no local copy, or a damaged one: use the shipped set
            X, y, note = _load_named("digits", dtype)
            name = "digits"
            note += f" (Fashion-MNIST not used: {exc})"
    else:
        X, y, note = _load_named(name, dtype, data_dir)
    X_train, y_train, X_val, y_val = train_validation_split(
        np.ascontiguousarray(X, dtype=dtype), np.asarray(y, dtype=np.int64), validation_fraction, seed=seed)
    if train_rows is not None and train_rows < len(y_train):
        keep = np.sort(np.random.default_rng(seed).permutation(len(y_train))[:train_rows])
        note += f"; a random subset of {train_rows} of its {len(y_train)} training rows"
        X_train, y_train = X_train[keep], y_train[keep]
    note += f"; {len(y_train)} training rows, {len(y_val)} validation rows held out of the training split"
    return BenchData(name, X_train, y_train, X_val, y_val, note)


def fingerprint(*arrays, sample_rows=64) -> str:
    """A short hash of ``arrays``: their shapes, up to ``sample_rows`` evenly spaced rows of each, all of 1-d ones.

    Cheap on any size of data (a memory-mapped file is read at those rows only),
    and it tells two data sets apart when their rows differ; a resumed run
    compares it with the run it continues. Floats are hashed as float64, so the
    same values give the same fingerprint whatever their dtype.
    """
    digest = hashlib.sha256()
    for array in arrays:
        array = np.asarray(array)
        digest.update(repr(array.shape).encode("ascii"))
        if array.ndim == 0 or array.shape[0] == 0:
            continue
        if array.ndim > 1:
            rows = np.unique(np.linspace(0, array.shape[0] - 1, min(sample_rows, array.shape[0])).astype(np.int64))
            array = array[rows]
        kind = np.float64 if array.dtype.kind == "f" else np.int64
        digest.update(np.ascontiguousarray(array, dtype=kind).tobytes())
    return digest.hexdigest()[:16]
