"""CSV files with one example per line: a label column and the pixel columns.

The common MNIST-as-CSV layout (``label,1x1,1x2,...,28x28`` then ``5,0,0,...``)
reads with the defaults. Shapes: ``n`` lines of data, ``f`` pixel columns.

Parsing is pandas' C reader; the slow cell-by-cell search only runs after it
failed, to say which cell was at fault.
"""
from __future__ import annotations

import csv
import gzip
import math
import numbers
import zlib

import numpy as np
import pandas as pd

from .._validation import check_dtype
from ._io import DataFormatError, as_path, is_gzip

_CHARS_PER_COLUMN = 64  # line 1 may be this long per allowed column: ample for numbers and names
_INT64 = np.iinfo(np.int64)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _first_line(path, compression, delimiter, max_columns) -> list[str]:
    """The cells of line 1, read only after its length and column count were found within bounds."""
    opener = gzip.open if compression == "gzip" else open
    limit = _CHARS_PER_COLUMN * max_columns
    with opener(path, "rt", newline="", encoding="utf-8-sig") as f:  # -sig: a BOM is not part of cell 0
        line = f.readline(limit + 1)
    if len(line) > limit:
        raise DataFormatError(f"{path}: line 1 is longer than {limit:,} characters "
                              f"({_CHARS_PER_COLUMN} for each of max_columns={max_columns:,})")
    if line.count(delimiter) >= max_columns:  # counted before the line is split into cells
        raise DataFormatError(f"{path}: line 1 has {line.count(delimiter) + 1:,} columns, more than "
                              f"max_columns={max_columns:,}")
    return next(csv.reader([line], delimiter=delimiter), [])


def _label_value(text: str) -> tuple[int | None, str]:
    """The label a cell holds, exactly, or ``None`` and what is wrong with it."""
    text = str(text).strip()
    if not text:
        return None, "is empty"
    if "_" in text:  # int() and float() accept 1_000; no CSV writer does
        return None, "is not a number"
    try:
        value = int(text)  # exact, at any size
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None, "is not a number"
        if not math.isfinite(number):
            return None, "is not finite"
        if not number.is_integer():
            return None, "is not a whole number (is label_column right?)"
        value = int(number)
        if abs(value) > 2**53:  # beyond this a decimal like 1e20 is not an exact integer
            return None, "is out of range for a label"
    if not _INT64.min <= value <= _INT64.max:
        return None, "is out of range for a label"
    return value, ""


def _labels(cells: np.ndarray, path, first_line: int, column: int) -> np.ndarray:
    """Labels from their text, exactly (never through the float type of the features), as int64."""
    numbers = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy()
    if numbers.dtype == np.int64:  # every cell an integer that fits: the common case
        return numbers
    if numbers.dtype == np.float64 and (np.abs(numbers) <= 2**53).all() and (numbers == np.round(numbers)).all():
        return numbers.astype(np.int64)  # whole decimals such as 3.0, all exact in float64
    labels = np.empty(len(cells), dtype=np.int64)
    for row, text in enumerate(cells):  # slow, exact, and says which cell is wrong
        value, problem = _label_value(text)
        if problem:
            raise DataFormatError(f"{path}: line {first_line + row}, column {column} (0-based): "
                                  f"label {text.strip() or repr(text)} {problem}")
        labels[row] = value
    return labels


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


def read_csv(path, label_column=0, header="auto", delimiter=",", max_value=255.0, dtype="float32",
             max_columns=100_000):
    """A CSV file of labelled examples, one per line, as float rows in [0, 1] and labels.

    Parameters
    ----------
    path : str or os.PathLike
        Plain or gzipped UTF-8 text (recognised by content); a byte-order mark is ignored.
    label_column : int
        Which column holds the label, 0-based; negative counts from the end
        (``-1``: the last column). Every other column is a feature.
    header : {"auto", True, False}
        Whether the first line is a header to skip. ``"auto"``: it is when any
        of its cells is not a number. Pass ``False`` to have a damaged first
        line reported instead of skipped.
    delimiter : str, one character
    max_value : float > 0
        The stored value that means 1.0: features are divided by it (255 for
        bytes; 1 when the file already holds values in [0, 1]). It must be a
        normal (not subnormal) number in ``dtype``, so every quotient is finite.
    dtype : {"float32", "float64"}
        Of the features. Labels are read from their text as exact integers.
    max_columns : int
        Line 1 may have at most this many columns (pandas spends about 1 KB
        per column, whatever the number of lines); it is checked, along with
        the line's length (64 characters a column), before anything is parsed.

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
        outside ``[0, max_value]``, a label that is not a whole number, not
        finite or beyond int64; or line 1 beyond ``max_columns``.
    """
    path = as_path(path)
    dt = check_dtype(dtype)
    if header not in ("auto", True, False):
        raise ValueError(f"header: must be 'auto', True or False, got {header!r}")
    if isinstance(label_column, bool) or not isinstance(label_column, numbers.Integral):
        raise TypeError(f"label_column: must be an integer column index, got {label_column!r}")
    if not (isinstance(delimiter, str) and len(delimiter) == 1):
        raise ValueError(f"delimiter: must be one character, got {delimiter!r}")
    if isinstance(max_columns, bool) or not isinstance(max_columns, numbers.Integral) or max_columns < 2:
        raise ValueError(f"max_columns: must be an integer >= 2, got {max_columns!r}")
    if isinstance(max_value, bool) or not isinstance(max_value, numbers.Real) or not 0 < max_value < np.inf:
        raise ValueError(f"max_value: must be a finite number > 0, got {max_value!r}")
    with np.errstate(over="ignore"):  # 1e39 in float32 is inf: refused just below
        scale = dt.type(max_value)
    if not np.finfo(dt).tiny <= scale < np.inf:
        raise ValueError(f"max_value: {max_value!r} is not a normal {dt.name} number (it is {float(scale)!r} there): "
                         f"dividing by it would not give finite features")

    compression = "gzip" if is_gzip(path) else None
    try:
        first = _first_line(path, compression, delimiter, int(max_columns))
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
    # Features parse straight into dt; the label column stays text, to be read exactly.
    # (A full dict: with a defaultdict pandas 3 still parses the last column as numbers.)
    types = {column: object if column == label_column else dt for column in range(n_columns)}
    try:
        table = pd.read_csv(path, dtype=types, keep_default_na=False, na_values=[""], **read_options)
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
    label_cells = table.pop(label_column).to_numpy()
    values = table.to_numpy(dtype=dt)  # the features: a view of pandas' single float block
    del table

    def column_of(feature):  # the file's column of feature index ``feature``
        return feature + (feature >= label_column)

    missing = np.isnan(values)
    label_missing = pd.isna(label_cells)
    bad_rows = missing.any(axis=1) | label_missing
    if bad_rows.any():
        row = int(np.argmax(bad_rows))
        columns = [column_of(int(f)) for f in np.flatnonzero(missing[row])[:1]]
        column = min(columns + [label_column] if label_missing[row] else columns)
        raise DataFormatError(f"{path}: line {first_data_line + row}, column {column} (0-based) is empty or NaN")
    del missing, bad_rows
    y = _labels(label_cells, path, first_data_line, label_column)
    # Checked before dividing: v in [0, max_value] gives v / max_value in [0, 1], always finite.
    outside = (values < 0) | (values > scale)
    if outside.any():
        row, feature = np.unravel_index(np.argmax(outside), outside.shape)
        raise DataFormatError(
            f"{path}: line {first_data_line + row}, column {column_of(feature)} (0-based): "
            f"{values[row, feature]:g} is outside [0, {max_value:g}] (see max_value)"
        )
    del outside
    # The one copy: pandas' block is column-major, X is row-major.
    X = np.empty(values.shape, dtype=dt)
    np.divide(values, scale, out=X)
    return X, y
