"""From stored pixels to what the trainer eats: float rows in [0, 1] and int64 labels.

Shapes: ``n`` examples, ``f`` features (pixels) per example.
"""
from __future__ import annotations

import numpy as np

from .._validation import check_dtype, first_nonfinite_row
from ._io import DataFormatError

_CHUNK_ROWS = 8192  # rows checked per step: bounds the temporaries of the range check


def scale_to_unit(pixels: np.ndarray, max_value: float, dtype) -> np.ndarray:
    """``pixels / max_value`` as a new C-contiguous ``(n, f)`` array of ``dtype``.

    Parameters
    ----------
    pixels : ndarray, ``(n, ...)``, any integer dtype (typically uint8)
        Flattened to ``(n, f)``; a read-only view over file bytes is fine.
    max_value : float
        The stored value that means 1.0 (255 for bytes, 16 for the 8x8 digits).
    dtype : {"float32", "float64"}

    Notes
    -----
    One pass, one allocation: the division converts and writes straight into
    the preallocated result, so no intermediate float copy ever exists. It is a
    division, not a multiplication by ``1/max_value``, so every value is the
    correctly rounded quotient (255 maps to exactly 1.0) and agrees with
    ``x / 255`` as other libraries compute it.
    """
    dt = check_dtype(dtype)
    rows = pixels.reshape(pixels.shape[0], -1)
    out = np.empty(rows.shape, dtype=dt)
    # A scalar of the target dtype selects the float32 (or float64) loop; the
    # integer input is cast chunk by chunk inside the ufunc.
    np.divide(rows, dt.type(max_value), out=out)
    return out


def unit_interval_floats(values: np.ndarray, dtype, where: str) -> np.ndarray:
    """Float rows already scaled to [0, 1]: checked, then cast (no copy if already ``dtype``).

    ``where`` names the file and array for the error message.
    """
    dt = check_dtype(dtype)
    rows = values.reshape(values.shape[0], -1)
    bad = first_nonfinite_row(rows)
    if bad is not None:
        raise DataFormatError(f"{where}: row {bad} contains NaN or inf")
    for start in range(0, rows.shape[0], _CHUNK_ROWS):
        chunk = rows[start:start + _CHUNK_ROWS]
        outside = ((chunk < 0) | (chunk > 1)).any(axis=1)
        if outside.any():
            row = start + int(np.argmax(outside))
            lo, hi = rows[row].min(), rows[row].max()
            raise DataFormatError(
                f"{where}: float images must already be scaled to [0, 1], row {row} spans [{lo}, {hi}]"
            )
    return rows.astype(dt, copy=False)


def integer_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """``labels`` as an int64 vector; float labels must hold whole numbers that convert exactly."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataFormatError(f"{where}: labels must be 1-D, got shape {labels.shape}")
    if labels.dtype.kind == "f":
        # Beyond 2**53 a float is not an exact integer, and beyond int64 the cast wraps.
        not_whole = ~np.isfinite(labels) | (labels != np.round(labels)) | (np.abs(labels) > 2**53)
        if not_whole.any():
            row = int(np.argmax(not_whole))
            raise DataFormatError(f"{where}: labels must be whole numbers of at most 2**53, row {row} is "
                                  f"{labels[row].item()!r}")
    elif labels.dtype.kind == "u" and labels.dtype.itemsize == 8 and labels.size and labels.max() > 2**63 - 1:
        row = int(np.argmax(labels > 2**63 - 1))
        raise DataFormatError(f"{where}: labels must fit int64, row {row} is {labels[row].item()!r}")
    elif labels.dtype.kind not in "iub":
        raise DataFormatError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    return labels.astype(np.int64)
