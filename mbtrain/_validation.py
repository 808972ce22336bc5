"""Argument checks for the public API, done once, at the boundary.

Every error names the argument and, for data, the first offending row, so a
learner can find the bad example in their own data set.
"""
from __future__ import annotations

import numbers
import warnings
from typing import NamedTuple

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}
_CHUNK_BYTES = 8 * 2**20  # input bytes scanned per step: bounds the temporaries of isfinite() and friends
_LABEL_CHUNK = 2**17  # labels range-checked per step
#: Inputs whose root mean square exceeds this get a warning: a sigmoid network wants inputs of order
#: one (data in [0, 1] or standardized has an RMS of 1 or less; 0-16 digits 7.7, 0-255 pixels ~100).
UNSCALED_RMS = 3.0


def check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: must be 'float32' or 'float64', got {dtype!r}")
    return dt


def check_sizes(sizes) -> tuple[int, ...]:
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(f"sizes: must be a sequence of layer widths like [784, 30, 10], got {sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"sizes: need at least an input and an output layer, got {list(sizes)}")
    for i, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"sizes[{i}]: layer widths must be positive integers, got {s!r}")
    return tuple(int(s) for s in sizes)


class RowScan(NamedTuple):
    """What one chunked pass over the rows found.

    ``bad_row`` is the first row holding NaN or inf (None if none); ``low``,
    ``high`` and ``rms`` (root mean square) of the values are None unless asked
    for, or when a bad row stopped the scan.
    """

    bad_row: int | None
    low: float | None = None
    high: float | None = None
    rms: float | None = None


def scan_rows(a: np.ndarray, value_range: bool = False) -> RowScan:
    """One pass over ``a``'s rows, in chunks of about 8 MiB (bounded temporaries).

    Float rows are checked for NaN and inf; with ``value_range`` the same pass
    also measures the values' range and root mean square (so ``fit`` reads a
    memory-mapped file once to validate it, not twice).
    """
    floats = a.dtype.kind in "fc"
    if not floats and not value_range:
        return RowScan(None)
    rows = a.reshape(a.shape[0], -1)
    step = max(1, _CHUNK_BYTES // max(1, rows.shape[1] * rows.itemsize))
    low, high, squares = np.inf, -np.inf, 0.0
    for start in range(0, rows.shape[0], step):
        chunk = rows[start:start + step]
        if floats:
            bad = ~np.isfinite(chunk).all(axis=1)
            if bad.any():
                return RowScan(start + int(np.argmax(bad)))
        if value_range and chunk.size:
            low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
            squares += float(np.einsum("ij,ij->", chunk, chunk, dtype=np.float64))
    if not value_range or rows.size == 0:
        return RowScan(None)
    return RowScan(None, low, high, float(np.sqrt(squares / rows.size)))


def first_nonfinite_row(a: np.ndarray) -> int | None:
    """Index of the first row holding NaN or inf, or ``None``; chunked to bound memory."""
    return scan_rows(a).bad_row


def warn_if_unscaled(scan: RowScan, name: str, stacklevel: int = 1) -> None:
    """A UserWarning when the inputs are far from the [0, 1] a sigmoid network wants.

    ``stacklevel`` counts from the caller (1: the line that called this).

    A sigmoid unit saturates when its input is large: on 0-255 pixels a network
    trains to chance accuracy without any error, which is why this warns.
    """
    if scan.rms is None or scan.rms <= UNSCALED_RMS:
        return
    warnings.warn(
        f"{name}: the inputs span [{scan.low:.4g}, {scan.high:.4g}] (root mean square {scan.rms:.3g}); "
        "a sigmoid network trains badly on inputs this large (its units saturate). Scale them to "
        "[0, 1] first, e.g. X / X.max() or sklearn.preprocessing.MinMaxScaler.",
        UserWarning, stacklevel=stacklevel + 1,
    )


def check_X(X, n_features: int, dtype: np.dtype, name: str = "X", keep_float32=False,
            warn_unscaled=False, stacklevel=1) -> np.ndarray:
    """Return ``X`` as a 2-D array of ``dtype`` (no copy when it already is one).

    With ``keep_float32`` a float32 ``X`` for a float64 ``dtype`` is returned as
    it is: widening float32 to float64 is exact, so the backends read its rows
    directly instead of holding a float64 copy of the whole set (which for a
    memory-mapped file would be twice its size, in memory). With
    ``warn_unscaled`` the same pass that checks the values measures them, and
    inputs far outside [0, 1] get a warning (:func:`warn_if_unscaled`, blaming
    the ``stacklevel``-th caller).
    """
    if isinstance(X, np.ndarray) and X.dtype == object or not hasattr(X, "__len__") and not isinstance(X, np.ndarray):
        raise TypeError(f"{name}: expected a 2-D numeric array, got {type(X).__name__}")
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: could not be read as a numeric array ({exc})") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = " (one example? use X.reshape(1, -1))" if arr.ndim == 1 else ""
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: has no rows")
    if arr.shape[1] != n_features:
        raise ValueError(
            f"{name}: has {arr.shape[1]} columns but the network's input layer has {n_features}"
        )
    scan = scan_rows(arr, value_range=warn_unscaled)
    if scan.bad_row is not None:
        raise ValueError(f"{name}: row {scan.bad_row} contains NaN or inf")
    if warn_unscaled:
        warn_if_unscaled(scan, name, stacklevel=stacklevel + 1)
    if keep_float32 and arr.dtype == np.float32 and np.dtype(dtype) == np.float64:
        return arr
    return np.asarray(arr, dtype=dtype)


def _numeric_array(y, name: str) -> np.ndarray:
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: could not be read as an array ({exc})") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected integer labels or a numeric target matrix, got dtype {arr.dtype}")
    return arr


def _label_vector(arr: np.ndarray, n_rows: int, n_outputs: int, name: str) -> np.ndarray:
    """1-D labels as int64: whole numbers in ``[0, n_outputs)``; names the first bad row."""
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name}: has {arr.shape[0]} labels but X has {n_rows} rows")
    if arr.dtype.kind == "f":
        bad = first_nonfinite_row(arr.reshape(-1, 1))
        if bad is not None:
            raise ValueError(f"{name}: row {bad} is NaN or inf")
        if not np.array_equal(arr, np.round(arr)):
            row = int(np.argmax(arr != np.round(arr)))
            raise ValueError(f"{name}: labels must be integers, row {row} is {arr[row].item()!r}")
    with np.errstate(invalid="ignore"):  # a float label beyond int64 is caught by the range check below
        labels = np.asarray(arr, dtype=np.int64)  # no copy for int64 labels (a memory-mapped file too)
    for start in range(0, n_rows, _LABEL_CHUNK):  # chunked: bounded temporaries
        part, values = labels[start:start + _LABEL_CHUNK], arr[start:start + _LABEL_CHUNK]
        out_of_range = (part < 0) | (part >= n_outputs) | (values != part)
        if out_of_range.any():
            row = start + int(np.argmax(out_of_range))
            raise ValueError(f"{name}: labels must be in [0, {n_outputs}), row {row} is {arr[row].item()!r}")
    return labels


def _target_matrix_shape(arr: np.ndarray, n_rows: int, n_outputs: int, name: str) -> None:
    if arr.shape != (n_rows, n_outputs):
        hint = ""
        if arr.shape == (n_rows, 1) and n_outputs != 1:
            hint = f" (a column of labels? pass {name}.ravel(): labels are 1-D)"
        raise ValueError(f"{name}: target matrix must have shape ({n_rows}, {n_outputs}), got {arr.shape}{hint}")


def check_targets(y, n_rows: int, n_outputs: int, dtype: np.dtype, name: str = "y",
                  keep_labels=False) -> np.ndarray:
    """Return the target matrix ``(n_rows, n_outputs)`` for labels or targets.

    Integer labels in ``[0, n_outputs)`` are one-hot encoded (with
    ``keep_labels``, returned as an int64 vector instead: no per-row matrix);
    a 2-D array is taken as the target matrix itself.
    """
    arr = _numeric_array(y, name)
    if arr.ndim == 1:
        labels = _label_vector(arr, n_rows, n_outputs, name)
        if keep_labels:
            return labels
        Y = np.zeros((n_rows, n_outputs), dtype=dtype)
        Y[np.arange(n_rows), labels] = 1
        return Y
    if arr.ndim == 2:
        _target_matrix_shape(arr, n_rows, n_outputs, name)
        bad = first_nonfinite_row(arr)
        if bad is not None:
            raise ValueError(f"{name}: row {bad} contains NaN or inf")
        return np.asarray(arr, dtype=dtype)
    raise ValueError(f"{name}: expected 1-D labels or a 2-D target matrix, got shape {arr.shape}")


def check_labels(y, n_rows: int, n_outputs: int, name: str = "y") -> np.ndarray:
    """Labels as an int64 vector, checked as :func:`check_targets` checks them.

    1-D labels must be whole numbers in ``[0, n_outputs)``; a 2-D target matrix
    ``(n_rows, n_outputs)`` gives its row argmax. Anything else (a column of
    labels ``(n_rows, 1)`` among them) is refused, never guessed at.
    """
    arr = _numeric_array(y, name)
    if arr.ndim == 1:
        return _label_vector(arr, n_rows, n_outputs, name)
    if arr.ndim == 2:
        _target_matrix_shape(arr, n_rows, n_outputs, name)
        bad = first_nonfinite_row(arr)
        if bad is not None:
            raise ValueError(f"{name}: row {bad} contains NaN or inf")
        return arr.argmax(axis=1)
    raise ValueError(f"{name}: expected 1-D labels or a 2-D target matrix, got shape {arr.shape}")


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: must be >= 1, got {value}")
    return int(value)


def check_nonnegative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: must be >= 0, got {value}")
    return int(value)


def check_positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value}")
    return value


def check_nonnegative_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be a finite number >= 0, got {value}")
    return value
