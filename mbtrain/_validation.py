"""Argument checks for the public API, done once, at the boundary.

Every error names the argument and, for data, the first offending row, so a
learner can find the bad example in their own data set.
"""
from __future__ import annotations

import numbers

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}
_CHUNK_ROWS = 8192  # rows checked per step: bounds the temporary of isfinite()


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


def first_nonfinite_row(a: np.ndarray) -> int | None:
    """Index of the first row holding NaN or inf, or ``None``; chunked to bound memory."""
    if a.dtype.kind not in "fc":
        return None
    rows = a.reshape(a.shape[0], -1)
    for start in range(0, rows.shape[0], _CHUNK_ROWS):
        bad = ~np.isfinite(rows[start:start + _CHUNK_ROWS]).all(axis=1)
        if bad.any():
            return start + int(np.argmax(bad))
    return None


def check_X(X, n_features: int, dtype: np.dtype, name: str = "X", keep_float32=False) -> np.ndarray:
    """Return ``X`` as a 2-D array of ``dtype`` (no copy when it already is one).

    With ``keep_float32`` a float32 ``X`` for a float64 ``dtype`` is returned as
    it is: widening float32 to float64 is exact, so the backends read its rows
    directly instead of holding a float64 copy of the whole set (which for a
    memory-mapped file would be twice its size, in memory).
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
    bad = first_nonfinite_row(arr)
    if bad is not None:
        raise ValueError(f"{name}: row {bad} contains NaN or inf")
    if keep_float32 and arr.dtype == np.float32 and np.dtype(dtype) == np.float64:
        return arr
    return np.asarray(arr, dtype=dtype)


def check_targets(y, n_rows: int, n_outputs: int, dtype: np.dtype, name: str = "y",
                  keep_labels=False) -> np.ndarray:
    """Return the target matrix ``(n_rows, n_outputs)`` for labels or targets.

    Integer labels in ``[0, n_outputs)`` are one-hot encoded (with
    ``keep_labels``, returned as an int64 vector instead: no per-row matrix);
    a 2-D array is taken as the target matrix itself.
    """
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: could not be read as an array ({exc})") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected integer labels or a numeric target matrix, got dtype {arr.dtype}")
    if arr.ndim == 1:
        if arr.shape[0] != n_rows:
            raise ValueError(f"{name}: has {arr.shape[0]} labels but X has {n_rows} rows")
        if arr.dtype.kind == "f":
            bad = first_nonfinite_row(arr.reshape(-1, 1))
            if bad is not None:
                raise ValueError(f"{name}: row {bad} is NaN or inf")
            if not np.array_equal(arr, np.round(arr)):
                row = int(np.argmax(arr != np.round(arr)))
                raise ValueError(f"{name}: labels must be integers, row {row} is {arr[row].item()!r}")
        labels = np.asarray(arr, dtype=np.int64)  # no copy for int64 labels (a memory-mapped file too)
        for start in range(0, n_rows, _CHUNK_ROWS * 16):  # chunked: bounded temporaries
            part = labels[start:start + _CHUNK_ROWS * 16]
            out_of_range = (part < 0) | (part >= n_outputs)
            if out_of_range.any():
                row = start + int(np.argmax(out_of_range))
                raise ValueError(
                    f"{name}: labels must be in [0, {n_outputs}), row {row} is {arr[row].item()!r}"
                )
        if keep_labels:
            return labels
        Y = np.zeros((n_rows, n_outputs), dtype=dtype)
        Y[np.arange(n_rows), labels] = 1
        return Y
    if arr.ndim == 2:
        if arr.shape != (n_rows, n_outputs):
            raise ValueError(
                f"{name}: target matrix must have shape ({n_rows}, {n_outputs}), got {arr.shape}"
            )
        bad = first_nonfinite_row(arr)
        if bad is not None:
            raise ValueError(f"{name}: row {bad} contains NaN or inf")
        return np.asarray(arr, dtype=dtype)
    raise ValueError(f"{name}: expected 1-D labels or a 2-D target matrix, got shape {arr.shape}")


def check_labels(y, n_rows: int, name: str = "y") -> np.ndarray:
    """Integer labels, or the argmax of a target matrix, as an int64 vector."""
    arr = np.asarray(y)
    if arr.ndim == 2:
        if arr.shape[0] != n_rows:
            raise ValueError(f"{name}: has {arr.shape[0]} rows but X has {n_rows}")
        return arr.argmax(axis=1)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise ValueError(f"{name}: expected {n_rows} labels, got shape {arr.shape}")
    return arr.astype(np.int64)


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
