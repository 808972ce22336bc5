"""Loading the data of a subcommand, with the errors a person can act on: one policy for every command.

A named data set (``--dataset``) comes with its test rows. A file of the user's
(``--data``) brings its own test part, or ``--test-data`` gives one, or else
:data:`TEST_FRACTION` of its rows are held out: a random choice within each
class (stratified by label, seeded with :data:`SPLIT_SEED`; files sorted by
label are common, so never the last rows), the same in ``train``,
``evaluate``, ``bench`` and ``sweep`` whatever their other seeds, so that
``evaluate`` scores a model on exactly the rows ``train`` held out. Validation
rows are drawn from the rest in the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .. import datasets
from ..datasets import (
    DataFormatError,
    book_split,
    detect_format,
    read_data_file,
    stratified_split,
    train_validation_split,
)
from ..datasets.userfile import FORMATS
from ..synthetic import make_blobs
from . import _args

DATASET_CHOICES = datasets.COMMAND_DATASETS
FILE_DATASETS = ("fashion-mnist", "mnist")  # the ones read from files, so --data-dir applies
TEST_FRACTION = 0.2  # of a file's rows held out for testing when it has no test part and --test-data is not given
SPLIT_SEED = 0
MAX_CLASSES = 10_000  # a larger label is an id, or the wrong column: the output layer would have that many units


class Loaded(NamedTuple):
    """A data set's train and test rows and where they came from (``source``, for the output).

    ``validation`` is the file's own validation part (the book's pickle has
    one), else None; ``split`` says how the test rows were chosen (for the
    output and machine.json), None for a named data set.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    source: str
    validation: tuple[np.ndarray, np.ndarray] | None = None
    split: dict | None = None


def add_data_arguments(p, command: str) -> None:
    """``--data``, ``--label-column``, ``--max-value``, ``--test-data``: the user's own data."""
    notes = {"evaluate": "evaluate also takes --test-data alone, without --data",
             "bench": "bench times training rows only; the test rows are set aside all the same, so that its "
                      "training rows are those train uses",
             "sweep": "the sweep's validation rows are drawn from the rest; the test rows are set aside, unused"}
    p.add_argument("--data", type=Path, metavar="PATH",
                   help="your own data instead of --dataset: a CSV file with a label column, an .npz (x_train, "
                        "y_train and optionally x_test, y_test), an IDX images file (its labels file beside it) or "
                        "a directory of IDX files, or the book's mnist.pkl.gz; gzipped or not; the format is read "
                        "from the content, not the name")
    p.add_argument("--label-column", type=int, metavar="N",
                   help="CSV: the column holding the class label, 0-based, negative from the end (-1: the last); "
                        "every other column is a feature (default: 0)")
    p.add_argument("--max-value", type=_args.positive_float, metavar="V",
                   help="CSV: the stored value that means 1.0: features are divided by it, and one outside [0, V] "
                        "is an error naming its line and column (default: 255; 1 for values already in [0, 1])")
    p.add_argument("--test-data", type=Path, metavar="PATH",
                   help=f"the test rows, from a file of any format --data reads (its test part, if it has one). "
                        f"Without it, a --data file that has no test part gives {TEST_FRACTION * 100:.0f}%% of its "
                        f"rows, a random choice within each class (stratified by label, seed {SPLIT_SEED}), never "
                        f"its last rows; the output says how many"
                        + (f"; {notes[command]}" if command in notes else ""))


def check_data_options(args, test_only_allowed=False) -> None:
    """``--data`` and ``--dataset`` exclude each other, and the file options need a file.

    ``test_only_allowed``: ``evaluate`` may take ``--test-data`` alone.
    """
    if args.data is not None and args.dataset is not None:
        raise ValueError("--data and --dataset: give one of them (--data reads your own file, --dataset names a "
                         "built-in data set)")
    if args.data is not None and getattr(args, "data_dir", None) is not None:
        raise ValueError("--data-dir: applies to --dataset fashion-mnist or mnist; give your own file or "
                         "directory to --data itself")
    has_file = args.data is not None or (test_only_allowed and args.test_data is not None)
    if not has_file:
        for option in ("label_column", "max_value", "test_data"):
            if getattr(args, option) is not None:
                raise ValueError(f"--{option.replace('_', '-')}: applies to your own data, given with --data")


def _check_csv_options(formats: dict, label_column, max_value) -> None:
    """Refuse ``--label-column`` or ``--max-value`` when no file given is CSV: they would be ignored."""
    if "csv" in formats.values():
        return
    for option, value in (("--label-column", label_column), ("--max-value", max_value)):
        if value is not None:
            path, fmt = next(iter(formats.items()))
            raise ValueError(f"{option}: applies to CSV files; {path} is an {FORMATS[fmt]}, whose labels and "
                             f"pixel scale the format itself gives")


def _check_labels(y: np.ndarray, path) -> None:
    """Class labels must be 0, 1, 2, ... below :data:`MAX_CLASSES`: the network has one output per class."""
    if not len(y):
        raise DataFormatError(f"{path}: no rows")
    bad = (y < 0) | (y >= MAX_CLASSES)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataFormatError(f"{path}: example {row} (0-based, in file order) has label {int(y[row])}; class labels "
                              f"must be whole numbers 0, 1, 2, ... below {MAX_CLASSES:,} (is the label column "
                              f"right?)")


def _read(path, fmt, dtype, label_column, max_value):
    csv = fmt == "csv"
    try:
        return read_data_file(path, dtype, label_column if csv else None, max_value if csv else None, fmt=fmt)
    except ValueError as exc:  # the reader names its parameters; here they are options
        for parameter in ("label_column", "max_value"):
            if str(exc).startswith(f"{parameter}:"):
                raise ValueError(f"--{parameter.replace('_', '-')}{str(exc)[len(parameter):]}") from None
        raise


def load_test_file(path, dtype="float32", label_column=None, max_value=None, formats=None):
    """``(X, y, source)``: the test rows of ``path``: its test part if it has one, else every row."""
    formats = formats or {path: detect_format(path)}
    _check_csv_options(formats, label_column, max_value)
    part = _read(path, formats[path], dtype, label_column, max_value)
    if part.X_test is not None:
        return part.X_test, part.y_test, f"{part.description} (its test part)"
    return part.X, part.y, part.description


def split_text(split: dict) -> str:
    """How the test rows were chosen, in words (``split`` as :func:`load_file` records it)."""
    if split["test"] == "held out":
        return (f"{split['test_rows']:,} of the file's {split['of_rows']:,} rows held out for testing "
                f"({split['fraction']:.0%}, stratified by label, seed {split['seed']})")
    if split["test"] == "test file":
        return f"{split['test_rows']:,} rows from --test-data {split['test_file']}"
    return f"{split['test_rows']:,} rows, the file's own test part"


def load_file(data, test_data=None, label_column=None, max_value=None, dtype="float32") -> Loaded:
    """A data file of the user's and its test rows, as the module's notes say.

    Raises
    ------
    DataFormatError (a ValueError)
        A damaged file or one that does not fit the other (the message names it).
    ValueError
        An option that does not apply to the files given, or too few rows to hold out a test part.
    FileNotFoundError
        Nothing at ``data`` or ``test_data``.
    """
    formats = {path: detect_format(path) for path in (data, test_data) if path is not None}
    _check_csv_options(formats, label_column, max_value)
    main = _read(data, formats[data], dtype, label_column, max_value)
    X, y, validation, description = main.X, main.y, main.validation, main.description
    _check_labels(y, data)
    if validation is not None:
        _check_labels(validation[1], data)
    if test_data is not None:
        if main.X_test is not None:
            raise ValueError(f"--test-data: {data} holds test rows of its own; leave --test-data out to use them")
        X_test, y_test, _ = load_test_file(test_data, dtype, label_column, max_value, formats)
        _check_labels(y_test, test_data)
        split = dict(test="test file", test_file=str(test_data))
        if X_test.shape[1] != X.shape[1]:
            raise DataFormatError(f"{test_data}: its rows have {X_test.shape[1]} features but those of {data} "
                                  f"have {X.shape[1]}")
    elif main.X_test is not None:
        X_test, y_test, split = main.X_test, main.y_test, dict(test="the file's test part")
        _check_labels(y_test, data)
    else:
        if len(y) < 3:
            raise ValueError(f"--data: {data} has {len(y)} rows: too few to hold out test rows; give --test-data")
        held = stratified_split(y, TEST_FRACTION, SPLIT_SEED)
        X_test, y_test, X, y = X[held], y[held], X[~held], y[~held]
        split = dict(test="held out", of_rows=len(held), fraction=TEST_FRACTION, stratified=True, seed=SPLIT_SEED)
    del main  # a held-out split copied its parts: the whole is freed here
    split = dict(file=str(data), format=formats[data], **split, test_rows=len(y_test))
    return Loaded(X, y, X_test, y_test, description, validation, split)


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


def validation_split(X, y, spec: str, seed: int, stratified=False):
    """Split off validation rows: ``"0"`` none, ``"book"`` the last 10,000, a count, or a fraction.

    A count or a fraction is a seeded random choice of rows; ``stratified``
    (the policy for a user's file): a random choice within each class, each
    class in proportion (:func:`mbtrain.datasets.stratified_split`).
    """
    if spec in ("0", "none"):
        return X, y, None
    if spec == "book":
        X_train, y_train, X_val, y_val = book_split(X, y)
        return X_train, y_train, (X_val, y_val)
    value = float(spec)
    n_validation = int(value) if value >= 1 else value
    if stratified:
        held = stratified_split(y, n_validation, seed)
        return X[~held], y[~held], (X[held], y[held])
    X_train, y_train, X_val, y_val = train_validation_split(X, y, n_validation=n_validation, seed=seed)
    return X_train, y_train, (X_val, y_val)


def confusion_matrix(y_true, y_pred, n_classes: int):
    """Counts, rows = true class, columns = predicted class, as a labelled DataFrame."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    index = pd.Index(range(n_classes), name="true")
    columns = pd.Index(range(n_classes), name="predicted")
    return pd.DataFrame(counts, index=index, columns=columns)
