"""A data file of the user's, in any format mbtrain reads, recognised by its content.

The formats, and what says which one a file is (never its name):

- a directory: the four standard IDX files of MNIST (``train-images-idx3-ubyte``
  ... ``t10k-labels-idx1-ubyte``, each plain or ``.gz``), or the two training ones;
- ``PK\\x03\\x04`` (a zip archive): an ``.npz`` of ``x_train, y_train`` and optionally ``x_test, y_test``;
- two zero bytes, an IDX type code and a dimension count: an IDX images file,
  whose labels file is found beside it (``images`` -> ``labels``, ``idx3`` -> ``idx1``);
- a pickle (``\\x80`` and a protocol number): the book's ``mnist.pkl.gz``;
- anything else: CSV text with a label column.

Each may be gzipped (recognised by its magic bytes), except the ``.npz``, which
is a zip archive already. Shapes: ``X`` ``(n, f)`` float rows in [0, 1], ``y``
``(n,)`` int64.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._validation import check_dtype
from ._io import DataFormatError, as_path, is_gzip, open_stream, read_up_to
from .book_pickle import read_book_pickle
from .catalog import IDX_FILES, files_in
from .csvfile import read_csv
from .idx import IDX_TYPES, read_idx_pair
from .npz import read_npz

#: format -> how the output names it
FORMATS = {
    "csv": "CSV",
    "npz": ".npz archive",
    "idx": "IDX images and labels",
    "idx-dir": "directory of IDX files",
    "book-pickle": "the book's pickle (mnist.pkl.gz)",
}
CSV_DEFAULTS = dict(label_column=0, max_value=255.0)


class DataFile(NamedTuple):
    """The parts of a data file. ``validation`` and the test rows are None when the file has none.

    ``description`` says what was read and how (the files, the label column, the
    pixel scaling), for the output of a command.
    """

    X: np.ndarray
    y: np.ndarray
    validation: tuple[np.ndarray, np.ndarray] | None
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    format: str
    description: str


def detect_format(path) -> str:
    """Which of :data:`FORMATS` ``path`` holds, from its first bytes (decompressed if gzipped).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    DataFormatError
        A damaged gzip stream.
    """
    path = as_path(path)
    if path.is_dir():
        return "idx-dir"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    with open(path, "rb") as f:
        raw = f.read(4)
    if raw in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip archive's first entry, or an empty archive
        return "npz"
    head = raw
    if is_gzip(path):
        with open_stream(path) as stream:
            head = read_up_to(stream, 4, path)
    if len(head) == 4 and head[:2] == b"\0\0" and head[2] in IDX_TYPES and head[3] >= 1:
        return "idx"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "book-pickle"
    return "csv"


def labels_beside(images: Path) -> Path:
    """The IDX labels file that goes with ``images``, named as MNIST names them.

    ``train-images-idx3-ubyte[.gz]`` -> ``train-labels-idx1-ubyte``, plain or ``.gz``.

    Raises
    ------
    DataFormatError
        No such file beside it (the message names the names tried).
    """
    stem = images.name[:-3] if images.name.endswith(".gz") else images.name
    name = stem.replace("images", "labels").replace("idx3", "idx1")
    tried = [images.parent / name, images.parent / f"{name}.gz"] if name != stem else []
    for candidate in tried:
        if candidate.is_file():
            return candidate
    if not tried:
        raise DataFormatError(f"{images}: an IDX file, but its name says nothing of its labels file (an images "
                              f"file is named like train-images-idx3-ubyte, its labels train-labels-idx1-ubyte)")
    raise DataFormatError(f"{images}: an IDX images file without its labels file beside it "
                          f"({' or '.join(p.name for p in tried)})")


def _idx_dir(path: Path, dtype) -> DataFile:
    found = files_in(path)
    train, test = ("train_images", "train_labels"), ("test_images", "test_labels")
    if not all(role in found for role in train) or any(role in found for role in test) != all(
            role in found for role in test):
        missing = [IDX_FILES[role] for role in IDX_FILES if role not in found]
        raise DataFormatError(f"{path}: a directory of IDX files needs {', '.join(IDX_FILES.values())} (each plain "
                              f"or .gz), or the first two alone; {', '.join(missing)} missing")
    X, y = read_idx_pair(found["train_images"], found["train_labels"], dtype)
    X_test = y_test = None
    read = [found[role].name for role in train]
    if test[0] in found:
        X_test, y_test = read_idx_pair(found["test_images"], found["test_labels"], dtype)
        read += [found[role].name for role in test]
        if X_test.shape[1] != X.shape[1]:
            raise DataFormatError(f"{found['test_images']}: {X_test.shape[1]} pixels per image but "
                                  f"{found['train_images']} has {X.shape[1]}")
    return DataFile(X, y, None, X_test, y_test, "idx-dir", f"IDX files {', '.join(read)} in {path}, pixels / 255")


def read_data_file(path, dtype="float32", label_column=None, max_value=None, fmt=None) -> DataFile:
    """Read a data file of any format mbtrain knows (see the module's notes).

    Parameters
    ----------
    path : str or os.PathLike
        A file, or a directory of IDX files.
    dtype : {"float32", "float64"}
    label_column, max_value
        For CSV only (see :func:`mbtrain.datasets.read_csv`; defaults 0 and 255).
        Given for another format, they are an error: nothing is ignored silently.
    fmt : str, optional
        The format, when :func:`detect_format` already told it.

    Returns
    -------
    DataFile
        The training rows; the file's own validation part (only the book's
        pickle has one) and test part (an ``.npz`` with ``x_test``, an IDX
        directory with the ``t10k`` files, the book's pickle), else None.

    Raises
    ------
    DataFormatError (a ValueError)
        The file is damaged or not what its content says; the message names the
        file (for CSV also the line and column).
    ValueError
        ``label_column`` or ``max_value`` given for a format that has no use for them.
    """
    path = as_path(path)
    dt = check_dtype(dtype)
    fmt = fmt or detect_format(path)
    if fmt != "csv":
        given = [name for name, value in (("label_column", label_column), ("max_value", max_value))
                 if value is not None]
        if given:
            raise ValueError(f"{given[0]}: applies to CSV files; {path} is an {FORMATS[fmt]}, whose labels and "
                             f"pixel scale the format itself says")
    if fmt == "csv":
        label_column = CSV_DEFAULTS["label_column"] if label_column is None else label_column
        max_value = CSV_DEFAULTS["max_value"] if max_value is None else max_value
        X, y = read_csv(path, label_column=label_column, max_value=max_value, dtype=dt)
        return DataFile(X, y, None, None, None, fmt,
                        f"CSV {path}, label column {label_column}, features / {max_value:g}")
    if fmt == "npz":
        X, y, X_test, y_test = read_npz(path, dt, require_test=False)
        return DataFile(X, y, None, X_test, y_test, fmt, f".npz archive {path}")
    if fmt == "idx":
        labels = labels_beside(path)
        X, y = read_idx_pair(path, labels, dt)
        return DataFile(X, y, None, None, None, fmt, f"IDX files {path} and {labels.name}, pixels / 255")
    if fmt == "idx-dir":
        return _idx_dir(path, dt)
    (X, y), validation, (X_test, y_test) = read_book_pickle(path, dt)
    return DataFile(X, y, validation, X_test, y_test, fmt, f"the book's pickle {path}")
