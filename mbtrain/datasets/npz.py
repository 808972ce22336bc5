"""``.npz`` archives in the Keras ``mnist.npz`` layout: ``x_train, y_train, x_test, y_test``.

Shapes: ``n`` examples, ``f`` features; images may be stored ``(n, rows, cols)``
and come back flattened to ``(n, f)``.
"""
from __future__ import annotations

import numpy as np

from .._validation import check_dtype
from ._convert import integer_labels, scale_to_unit, unit_interval_floats
from ._io import DataFormatError, NpzMembers, as_path

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _images(x: np.ndarray, dtype, where: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return scale_to_unit(x, 255, dtype)
    if x.dtype.kind == "f":
        return unit_interval_floats(x, dtype, where)
    raise DataFormatError(
        f"{where}: images must be uint8 (0..255, scaled by 1/255) or floats already in [0, 1], "
        f"got dtype {x.dtype}"
    )


def read_npz(path, dtype="float32", require_test=True):
    """An ``.npz`` archive holding ``x_train, y_train, x_test, y_test``.

    Parameters
    ----------
    path : str or os.PathLike
    dtype : {"float32", "float64"}
    require_test : bool
        False accepts an archive of ``x_train, y_train`` alone (both test keys
        absent); its ``X_test`` and ``y_test`` are then None.

    Returns
    -------
    X_train : ndarray, ``(n_train, f)``, ``dtype``, in [0, 1]
    y_train : ndarray, ``(n_train,)``, int64
    X_test : ndarray, ``(n_test, f)``, ``dtype``, in [0, 1]; or None
    y_test : ndarray, ``(n_test,)``, int64; or None

    Notes
    -----
    uint8 images are divided by 255; float images are taken as already in
    [0, 1], which is checked (a float archive of 0..255 values is refused, not
    silently squashed). Labels may be any integer type, or floats holding whole
    numbers. An object array inside the archive is an error, never code to
    run, and every member's header is checked against the bytes the archive
    really holds before anything is allocated (a header claiming terabytes
    fails at once; see :class:`mbtrain.datasets._io.NpzMembers`): a member
    is decompressed only as far as its header declares, and only when its
    compressed size could hold that much (deflate expands at most ~1032:1).

    Raises
    ------
    DataFormatError (a ValueError)
        Not an npz archive, a missing key, an object array, wrong dtypes or
        shapes, out-of-range floats, or images and labels of different lengths.
    """
    path = as_path(path)
    check_dtype(dtype)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with NpzMembers(path) as archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        splits = ("train", "test")
        if not require_test and missing == ["x_test", "y_test"]:
            missing, splits = [], ("train",)
        if missing:
            raise DataFormatError(
                f"{path}: missing key(s) {missing}; an mbtrain .npz holds {list(NPZ_KEYS)}, "
                f"this one holds {archive.files}"
            )
        out = []
        for split in splits:
            y = integer_labels(archive.read(f"y_{split}"), f"{path}: y_{split}")
            x = archive.read(f"x_{split}")
            if x.ndim < 2:
                raise DataFormatError(
                    f"{path}: x_{split}: images need at least 2 dimensions (n, features), got shape {x.shape}"
                )
            if x.shape[0] != y.shape[0]:
                raise DataFormatError(f"{path}: x_{split} has {x.shape[0]:,} rows but y_{split} has {y.shape[0]:,}")
            out += [_images(x, dtype, f"{path}: x_{split}"), y]
            del x
        if len(out) == 2:
            return out[0], out[1], None, None
        if out[0].shape[1] != out[2].shape[1]:
            raise DataFormatError(
                f"{path}: x_train has {out[0].shape[1]} features per row but x_test has {out[2].shape[1]}"
            )
    return tuple(out)
