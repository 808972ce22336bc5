"""The data a benchmark or sweep runs on, and the network sizes that fit it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import datasets
from ..commands._data import load_file, split_text
from ..datasets import stratified_split, train_validation_split
from ..synthetic import make_blobs

DATASETS = ("auto", *datasets.COMMAND_DATASETS)  # "auto": Fashion-MNIST when it is here, else digits


@dataclass
class BenchData:
    """Training and validation rows of one data set.

    ``note`` says where the rows came from (and what was subsampled), for the
    report; ``split``, for a user's file, how its test and validation rows were
    chosen (for machine.json; empty for a named data set).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    note: str = ""
    split: dict = field(default_factory=dict)

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
    return _subset(BenchData(name, X_train, y_train, X_val, y_val, note), train_rows, seed)


def _subset(data: BenchData, train_rows, seed) -> BenchData:
    """Keep ``train_rows`` of the training rows (a seeded random subset, in their order); say so in the note."""
    if train_rows is not None and train_rows < len(data.y_train):
        keep = np.sort(np.random.default_rng(seed).permutation(len(data.y_train))[:train_rows])
        data.note += f"; a random subset of {train_rows} of its {len(data.y_train)} training rows"
        data.X_train, data.y_train = data.X_train[keep], data.y_train[keep]
    data.note += (f"; {len(data.y_train)} training rows, {len(data.y_val)} validation rows held out of the "
                  f"training split")
    if data.split:
        data.split.update(train_rows=len(data.y_train), validation_rows=len(data.y_val))
    return data


def load_file_data(path, test_data=None, label_column=None, max_value=None, dtype="float32", train_rows=None,
                   validation_fraction=1 / 6, seed=0) -> BenchData:
    """A user's data file (``--data``), with the same test rows set aside as ``mbtrain train`` sets aside.

    The test rows are never used here; they are set aside so that a benchmark or
    sweep runs on the rows ``train`` trains on (see :mod:`mbtrain.commands._data`
    for the policy). The validation rows are the file's own (the book's
    pickle), else ``validation_fraction`` of the rest, stratified by label and
    seeded with ``seed``; ``train_rows`` then subsamples the training rows.

    Raises
    ------
    ValueError, OSError
        As :func:`mbtrain.commands._data.load_file`: a damaged file (the message
        names it, with the line and column for CSV), an option that does not
        apply to it.
    """
    loaded = load_file(path, test_data, label_column, max_value, dtype)
    split = dict(loaded.split)
    note = f"{loaded.source}; test rows set aside, unused here: {split_text(split)}"
    if loaded.validation is not None:
        X_train, y_train = loaded.X_train, loaded.y_train
        X_val, y_val = loaded.validation
        split.update(validation="the file's own validation part")
        note += "; validation rows: the file's own"
    else:
        held = stratified_split(loaded.y_train, validation_fraction, seed)
        X_train, y_train = loaded.X_train[~held], loaded.y_train[~held]
        X_val, y_val = loaded.X_train[held], loaded.y_train[held]
        split.update(validation="held out of the rest", validation_fraction=validation_fraction,
                     validation_stratified=True, validation_seed=seed)
        note += f"; validation rows drawn from the rest ({validation_fraction:.3g}, stratified by label, seed {seed})"
    del loaded
    data = BenchData(Path(path).name, np.ascontiguousarray(X_train, dtype=dtype), y_train,
                     np.ascontiguousarray(X_val, dtype=dtype), y_val, note, split)
    return _subset(data, train_rows, seed)


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
