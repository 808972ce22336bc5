"""CSV files with one example per line: a label column and the pixel columns.

The common MNIST-as-CSV layout (``label,1x1,1x2,...,28x28`` then ``5,0,0,...``)
reads with the defaults. Shapes: ``n`` lines of data, ``f`` pixel columns.

Parsing is pandas' C reader; the slow cell-by-cell search only runs after it
failed, to say which cell was at fault.
"""
from __future__ import annotations

import csv
import gzip
import numbers
import zlib

import numpy as np
import pandas as pd

from .._validation import check_dtype
from ._io import DataFormatError, as_path, is_gzip


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _first_line(path, compression, delimiter) -> list[str]:
    opener = gzip.open if compression == "gzip" else open
    with opener(path, "rt", newline="") as f:
        return next(csv.reader(f, delimiter=delimiter), [])


def _first_bad_cell(path, read_options, first_line: int):
    """``(line, column, text)`` of the first cell that is not a number, in reading order."""
    cells = pd.read_csv(path, dtype=str, keep_default_na=False, **read_options)
    first = None
    for column in cells.columns:
        text = cells[column]
        bad = pd.to_numeric(text, errors="coerce").isna().to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            if first is None or row < first[0]:
                first = (row, column, text.iloc[row])
    if first is None:
        return None
    row, column, text = first
    return first_line + row, column, text


def read_csv(path, label_column=0, header="auto", delimiter=",", max_value=255.0, dtype="float32"):
    """A CSV file of labelled examples, one per line, as float rows in [0, 1] and labels.

    Parameters
    ----------
    path : str or os.PathLike
        Plain or gzipped text (recognised by content).
    label_column : int
        Which column holds the label, 0-based; negative counts from the end
        (``-1``: the last column). Every other column is a feature.
    header : {"auto", True, False}
        Whether the first line is a header to skip. ``"auto"``: it is when any
        of its cells is not a number. Pass ``False`` to have a damaged first
        line reported instead of skipped.
    delimiter : str
    max_value : float > 0
        The stored value that means 1.0: features are divided by it (255 for
        bytes; 1 when the file already holds values in [0, 1]).
    dtype : {"float32", "float64"}

    Returns
    -------
    X : ndarray, ``(n, f)``, ``dtype``, in [0, 1]
    y : ndarray, ``(n,)``, int64

    Raises
    ------
    DataFormatError (a ValueError)
        Naming the file and, for a bad cell, its line (1-based, as an editor
        shows it) and column (0-based, as ``label_column`` counts): a cell that
        is not a number, an empty cell, lines of different lengths, a feature
        outside ``[0, max_value]``, a label that is not a whole number.
    """
    path = as_path(path)
    dt = check_dtype(dtype)
    if header not in ("auto", True, False):
        raise ValueError(f"header: must be 'auto', True or False, got {header!r}")
    if isinstance(label_column, bool) or not isinstance(label_column, numbers.Integral):
        raise TypeError(f"label_column: must be an integer column index, got {label_column!r}")
    if isinstance(max_value, bool) or not isinstance(max_value, numbers.Real) or not 0 < max_value < np.inf:
        raise ValueError(f"max_value: must be a finite number > 0, got {max_value!r}")

    compression = "gzip" if is_gzip(path) else None
    try:
        first = _first_line(path, compression, delimiter)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFormatError(f"{path}: not a CSV text file ({exc})") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataFormatError(f"{path}: truncated or corrupted gzip file ({exc})") from None
    if not first:
        raise DataFormatError(f"{path}: empty file")
    if header == "auto":
        header = not all(_is_number(cell) for cell in first)
    n_columns = len(first)
    if n_columns < 2:
        raise DataFormatError(
            f"{path}: line 1 has {n_columns} column; need a label and at least one feature "
            f"(is the delimiter {delimiter!r} right?)"
        )
    if not -n_columns <= label_column < n_columns:
        raise ValueError(f"label_column: {label_column} is out of range for {path}, which has {n_columns} columns")
    label_column = label_column % n_columns
    first_data_line = 2 if header else 1

    # Blank lines kept as rows, so row r is always line first_data_line + r.
    read_options = dict(header=None, skiprows=1 if header else 0, sep=delimiter,
                        compression=compression, skip_blank_lines=False)
    try:
        table = pd.read_csv(path, dtype=dt, **read_options)
    except pd.errors.ParserError as exc:
        raise DataFormatError(f"{path}: lines of different lengths or broken quoting ({str(exc).strip()})") from None
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: no data lines after the header") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not a CSV text file ({exc})") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataFormatError(f"{path}: truncated or corrupted gzip file ({exc})") from None
    except ValueError:
        bad = _first_bad_cell(path, read_options, first_data_line)
        if bad is None:
            raise
        line, column, text = bad
        raise DataFormatError(f"{path}: line {line}, column {column} (0-based): {text!r} is not a number") from None

    if table.shape[1] != n_columns:  # pandas takes the width from the first data line, not the header
        raise DataFormatError(
            f"{path}: line {first_data_line} has {table.shape[1]} columns but line 1 has {n_columns}")
    values = table.to_numpy()  # a view of pandas' single float block, no copy
    del table
    missing = np.isnan(values)
    if missing.any():
        row, column = np.unravel_index(np.argmax(missing), missing.shape)
        raise DataFormatError(
            f"{path}: line {first_data_line + row}, column {column} (0-based) is empty or NaN"
        )
    labels = values[:, label_column]
    fractional = labels != np.round(labels)
    if fractional.any():
        row = int(np.argmax(fractional))
        raise DataFormatError(
            f"{path}: line {first_data_line + row}, column {label_column} (0-based): "
            f"label {labels[row]:g} is not a whole number (is label_column right?)"
        )
    y = labels.astype(np.int64)
    # The one copy: pandas' block is column-major, X is row-major without the label.
    X = np.empty((values.shape[0], n_columns - 1), dtype=dt)
    X[:, :label_column] = values[:, :label_column]
    X[:, label_column:] = values[:, label_column + 1:]
    del values
    X /= dt.type(max_value)
    outside = (X < 0) | (X > 1)
    if outside.any():
        row, feature = np.unravel_index(np.argmax(outside), outside.shape)
        column = feature + (feature >= label_column)
        raise DataFormatError(
            f"{path}: line {first_data_line + row}, column {column} (0-based): "
            f"{X[row, feature] * max_value:g} is outside [0, {max_value:g}] (see max_value)"
        )
    return X, y
