"""The IDX format of MNIST, Fashion-MNIST and KMNIST (``*-idx3-ubyte``, ``*-idx1-ubyte``, gzipped or not).

Layout (all integers big-endian)::

    bytes 0-1   zero
    byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4 * d       the size of each dimension, uint32
    ...         the items, row-major

Shapes: ``n`` examples, ``f = rows * cols`` pixels per example (784 for 28x28).

Every check on the header happens before the payload is converted: the sizes
the header declares are compared with the bytes the file really holds, so a
corrupted header claiming 10^12 items fails at once instead of allocating. A
gzipped file is read as a stream, header first, and no more of it is kept than
the header declares (:func:`_read_gzip_checked`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .._validation import check_dtype
from ._convert import integer_labels, scale_to_unit
from ._io import (
    DataFormatError,
    as_path,
    count_up_to,
    is_gzip,
    max_inflated_size,
    open_stream,
    read_up_to,
    readinto_up_to,
)

IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# numpy 1.x arrays have at most 32 dimensions (numpy 2: 64); an IDX data set has 1 to 4.
MAX_NDIM = 32
_MAX_EXTRA = 2**20  # bytes counted after a gzipped payload, to say how many there are


@dataclass(frozen=True)
class IdxHeader:
    """What an IDX header declares: item dtype, shape, and where the items start."""

    type_code: int
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int

    @property
    def payload_bytes(self) -> int:
        # Python ints: a hostile header cannot overflow the product.
        return math.prod(self.shape) * self.dtype.itemsize


def parse_header(data, path, file_size: int) -> IdxHeader:
    """Parse and check an IDX header against the file's real size (in bytes, decompressed).

    Parameters
    ----------
    data : bytes-like
        At least the first ``4 + 4 * 255`` bytes of the (decompressed) file, or all of it.
    path : path, for error messages
    file_size : int
        The real (decompressed) size of the file.
    """
    header = _parse_fields(data, path, file_size)
    _check_size(header, path, file_size)
    return header


def _parse_fields(data, path, file_size: int) -> IdxHeader:
    """The header's fields, checked on their own; ``file_size`` is the file's size, or at least ``len(data)``."""
    if file_size < 4:
        raise DataFormatError(f"{path}: not an IDX file: only {file_size} bytes, the header alone needs 4")
    zero, type_code, ndim = int.from_bytes(data[0:2], "big"), data[2], data[3]
    if zero != 0:
        hint = " (it looks like a gzip file that failed to decompress)" if bytes(data[:2]) == b"\x1f\x8b" else ""
        raise DataFormatError(
            f"{path}: not an IDX file: bytes 0-1 of the magic number must be 0, got "
            f"{bytes(data[:4]).hex(' ')}{hint}"
        )
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise DataFormatError(f"{path}: unknown IDX type code 0x{type_code:02X} at byte 2 (known: {known})")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataFormatError(f"{path}: IDX header declares {ndim} dimensions (byte 3); between 1 and "
                              f"{MAX_NDIM} are supported")
    offset = 4 + 4 * ndim
    if file_size < offset:
        raise DataFormatError(
            f"{path}: truncated IDX header: {ndim} dimensions need {offset} header bytes, the file has {file_size}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if 0 in shape:
        # numpy cannot even describe some of these (0 x 2^32 x 2^32), and no data set is empty
        raise DataFormatError(f"{path}: the IDX header declares shape {shape}, which holds no items")
    return IdxHeader(type_code, IDX_TYPES[type_code], shape, offset)


def _check_size(header: IdxHeader, path, file_size: int) -> None:
    expected = header.offset + header.payload_bytes
    if file_size < expected:
        raise DataFormatError(
            f"{path}: truncated or corrupted: the header declares shape {header.shape} of "
            f"{header.dtype.name}, i.e. {expected:,} bytes, but the file holds {file_size:,}"
        )
    if file_size > expected:
        raise DataFormatError(
            f"{path}: corrupted: {file_size - expected:,} unexpected bytes after the "
            f"{expected:,} that the header (shape {header.shape}, {header.dtype.name}) declares"
        )


def _read_gzip_checked(path) -> tuple[IdxHeader, np.ndarray]:
    """Header and content of a gzipped IDX file; the header is read and checked first.

    Then at most the payload it declares is kept: a stream shorter or longer
    than that is an error, and a header declaring more than the compressed
    file can expand to is only counted against the stream, never allocated.
    Memory is therefore bounded by the smaller of what the header declares and
    what the file really holds.
    """
    with open_stream(path) as stream:
        head = read_up_to(stream, 4, path)
        if len(head) == 4:
            head += read_up_to(stream, 4 * head[3], path)  # the dimension sizes; at most 1,020 bytes
        header = _parse_fields(head, path, len(head))  # short only when the stream ended
        expected = header.offset + header.payload_bytes
        limit = max_inflated_size(os.path.getsize(path))
        if expected <= limit:
            data = np.empty(expected, dtype=np.uint8)
            data[:header.offset] = np.frombuffer(head, dtype=np.uint8)
            size = header.offset + readinto_up_to(stream, memoryview(data)[header.offset:], path)
            # Reading on to the end makes gzip check the CRC; beyond _MAX_EXTRA it stops.
            size += count_up_to(stream, _MAX_EXTRA, path)
        else:  # counted, never kept, to say how much the file really holds
            data, size = None, header.offset + count_up_to(stream, limit, path)
    if size > expected + _MAX_EXTRA:
        raise DataFormatError(f"{path}: corrupted: more than {_MAX_EXTRA:,} unexpected bytes after the {expected:,} "
                              f"that the header (shape {header.shape}, {header.dtype.name}) declares")
    _check_size(header, path, size)
    if data is None:  # a deflate stream cannot expand that far, so _check_size has already refused it
        raise DataFormatError(f"{path}: the header declares {expected:,} bytes, more than the file can hold")
    data.flags.writeable = False  # like the bytes of a plain file
    return header, data


def _read_checked(path) -> tuple[IdxHeader, bytes]:
    """Header and the whole (decompressed) file content, checked against each other."""
    path = as_path(path)
    if is_gzip(path):
        return _read_gzip_checked(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(4 + 4 * 255)
        header = parse_header(head, path, size)  # fails before the payload is read
        f.seek(0)
        data = f.read()
    if len(data) != size:
        raise DataFormatError(f"{path}: file changed while being read ({size:,} bytes, then {len(data):,})")
    return header, data


def read_idx(path) -> np.ndarray:
    """Any IDX file as an array of the shape and type its header declares.

    Parameters
    ----------
    path : str or os.PathLike
        An IDX file, gzipped or not (recognised by content, not by name).

    Returns
    -------
    ndarray
        Shape as declared, dtype as the type code says (``uint8`` for MNIST).
        Single-byte types are a read-only view over the file content (no copy);
        multi-byte types are converted to native byte order.

    Raises
    ------
    DataFormatError (a ValueError)
        Wrong magic number, unknown type code, truncated or over-long file,
        damaged gzip stream; the message names the file.
    """
    header, data = _read_checked(path)
    items = np.frombuffer(data, dtype=header.dtype, offset=header.offset).reshape(header.shape)
    if header.dtype.itemsize > 1:
        items = items.astype(header.dtype.newbyteorder("="))
    return items


def _uint8_items(path, header: IdxHeader, data: bytes, role: str) -> np.ndarray:
    if header.type_code != 0x08:
        raise DataFormatError(
            f"{path}: {role} must be unsigned bytes (IDX type code 0x08), got 0x{header.type_code:02X} "
            f"({header.dtype.name})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header.offset)


def _image_pixels(path) -> np.ndarray:
    """The uint8 pixels of an IDX image file, ``(n, f)``, a read-only view over its bytes."""
    path = as_path(path)
    header, data = _read_checked(path)
    if len(header.shape) < 2:
        raise DataFormatError(
            f"{path}: an image file needs at least 2 dimensions (n, rows, cols), the header declares "
            f"shape {header.shape} (is this a labels file?)"
        )
    return _uint8_items(path, header, data, "images").reshape(header.shape[0], -1)


def read_idx_images(path, dtype="float32") -> np.ndarray:
    """An IDX image file as float rows in [0, 1].

    Parameters
    ----------
    path : str or os.PathLike
        e.g. ``train-images-idx3-ubyte.gz``: uint8 items, shape ``(n, rows, cols)``
        (any number of dimensions >= 2; all but the first are flattened).
    dtype : {"float32", "float64"}

    Returns
    -------
    X : ndarray, ``(n, rows * cols)``, ``dtype``, values ``pixel / 255``
        The only array of ``dtype`` ever allocated: the file's bytes are viewed,
        not copied, and converted once into ``X``.
    """
    check_dtype(dtype)
    return scale_to_unit(_image_pixels(path), 255, dtype)


def read_idx_labels(path) -> np.ndarray:
    """An IDX label file as an int64 vector ``(n,)``.

    Parameters
    ----------
    path : str or os.PathLike
        e.g. ``train-labels-idx1-ubyte.gz``: uint8 items, shape ``(n,)``.
    """
    path = as_path(path)
    header, data = _read_checked(path)
    if len(header.shape) != 1:
        raise DataFormatError(
            f"{path}: a label file has 1 dimension, the header declares shape {header.shape} "
            f"(is this an image file?)"
        )
    return integer_labels(_uint8_items(path, header, data, "labels"), str(path))


def read_idx_pair(images_path, labels_path, dtype="float32") -> tuple[np.ndarray, np.ndarray]:
    """Images and their labels, checked to have one label per image.

    Returns
    -------
    X : ndarray, ``(n, f)``, ``dtype``, in [0, 1]
    y : ndarray, ``(n,)``, int64
    """
    check_dtype(dtype)
    y = read_idx_labels(labels_path)
    pixels = _image_pixels(images_path)
    if pixels.shape[0] != y.shape[0]:  # checked before the float array is allocated
        raise DataFormatError(
            f"{images_path}: holds {pixels.shape[0]:,} images but {labels_path} holds {y.shape[0]:,} labels"
        )
    return scale_to_unit(pixels, 255, dtype), y
