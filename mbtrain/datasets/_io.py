"""Bytes from files: gzip sniffing, bounded stream reads, checked ``.npz`` members, and the error every reader raises.

Compression is recognised by the gzip magic bytes, not by the file name, so a
file gunzipped but not renamed (or the reverse) still reads.
"""
from __future__ import annotations

import contextlib
import gzip
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"


class DataFormatError(ValueError):
    """A data file is in the wrong format, corrupted or truncated.

    The message always starts with the file's path.
    """


def as_path(path, name: str = "path") -> Path:
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    raise TypeError(f"{name}: expected a file path (str or os.PathLike), got {type(path).__name__}")


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


READ_CHUNK = 1 << 18  # bytes per read from a stream (256 KiB): bounds every temporary buffer


def open_stream(path: Path):
    """``path`` opened for binary reading, through gzip when its content is gzip."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


@contextlib.contextmanager
def gzip_errors(path: Path):
    """Turn the errors of a damaged gzip stream into a :class:`DataFormatError` naming ``path``."""
    try:
        yield
    except EOFError:
        raise DataFormatError(f"{path}: truncated gzip file (the compressed stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataFormatError(f"{path}: corrupted gzip file ({exc})") from None


def read_up_to(stream, size: int, path: Path) -> bytes:
    """Up to ``size`` bytes from ``stream``; fewer only at its end. ``size`` should be small."""
    parts, got = [], 0
    with gzip_errors(path):
        while got < size:
            part = stream.read(min(size - got, READ_CHUNK))
            if not part:
                break
            parts.append(part)
            got += len(part)
    return b"".join(parts)


def readinto_up_to(stream, buffer: memoryview, path: Path) -> int:
    """Fill ``buffer`` from ``stream`` in bounded steps; returns the bytes read (less only at the end)."""
    filled = 0
    with gzip_errors(path):
        while filled < len(buffer):
            got = stream.readinto(buffer[filled:filled + READ_CHUNK])
            if not got:
                break
            filled += got
    return filled


def count_up_to(stream, limit: int, path: Path) -> int:
    """How many bytes remain in ``stream``, counting at most ``limit`` (then ``limit + 1``), keeping none."""
    count = 0
    with gzip_errors(path):
        while count <= limit:
            part = stream.read(READ_CHUNK)
            if not part:
                break
            count += len(part)
    return min(count, limit + 1)


class RecordingReader:
    """A file-like view of ``stream`` that keeps every byte read, up to ``max_bytes`` in all.

    Reading past ``max_bytes`` raises :class:`DataFormatError` (naming ``path``)
    before the bytes are read, so a stream that claims or holds more costs at
    most ``max_bytes`` of memory. ``data`` is everything read so far.
    """

    def __init__(self, stream, path: Path, max_bytes: int):
        self.stream, self.path, self.max_bytes = stream, path, max_bytes
        self.data = bytearray()

    def _refuse_beyond(self, size: int) -> None:
        if len(self.data) + size > self.max_bytes:
            raise DataFormatError(
                f"{self.path}: holds (or claims) more than max_bytes={self.max_bytes:,} bytes "
                f"(decompressed); pass a larger max_bytes if the file is genuine")

    def skip(self, size: int) -> int:
        """Read and keep ``size`` bytes without returning them; returns how many there were."""
        self._refuse_beyond(size)
        start = len(self.data)
        with gzip_errors(self.path):
            while len(self.data) - start < size:
                part = self.stream.read(min(size - (len(self.data) - start), READ_CHUNK))
                if not part:
                    break
                self.data += part
        return len(self.data) - start

    def read(self, size: int) -> bytes:
        start = len(self.data)
        self.skip(size)
        with memoryview(self.data) as view, view[start:] as tail:
            return bytes(tail)

    def readline(self, limit: int) -> bytes:
        """One line (with its newline) of at most ``limit`` bytes; longer lines are cut there."""
        with gzip_errors(self.path):
            line = self.stream.readline(min(limit, self.max_bytes - len(self.data) + 1))
        self._refuse_beyond(len(line))
        self.data += line
        return line


class BufferReader:
    """``read``/``readline``/``readinto`` over a bytes-like object, never copying it whole.

    (``io.BytesIO`` copies a ``bytearray`` on construction.)
    """

    def __init__(self, data):
        self._data, self._view, self._pos = data, memoryview(data), 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        out = self._view[self._pos:end].tobytes()
        self._pos = end
        return out

    def readinto(self, buffer) -> int:
        out = memoryview(buffer).cast("B")
        got = min(len(out), len(self._view) - self._pos)
        out[:got] = self._view[self._pos:self._pos + got]
        self._pos += got
        return got

    def readline(self, size: int = -1) -> bytes:
        newline = self._data.find(b"\n", self._pos)
        end = len(self._view) if newline < 0 else newline + 1
        if size is not None and size >= 0:
            end = min(end, self._pos + size)
        return self.read(end - self._pos)


# Deflate cannot expand data by more than about 1032:1; a zip member (or a gzip
# file) that claims more is lying about its size, whatever it really holds.
_MAX_DEFLATE_RATIO = 1100


def max_inflated_size(compressed_bytes: int) -> int:
    """More than any deflate stream (zip member, gzip file) of ``compressed_bytes`` can expand to."""
    return compressed_bytes * _MAX_DEFLATE_RATIO + 1024


class NpzMembers:
    """The arrays of an ``.npz`` archive, each read only after its header was checked.

    ``np.load`` allocates the whole array a ``.npy`` header declares before it
    reads a byte of it, so a 200-byte archive claiming ``(10**6, 10**6)``
    float32 asks for 3.6 TiB. Here each member's declared shape and dtype must
    agree with the bytes the archive really holds (the member's size, itself
    checked against the compressed size and the file size) before anything is
    allocated, and object arrays (which need pickle) are refused.

    Use as a context manager; ``files`` lists the array names (without
    ``.npy``) and ``read(name)`` returns one array. Errors are ``error``
    (default :class:`DataFormatError`) with messages that start with the path.
    """

    def __init__(self, path, error=DataFormatError):
        self.path = Path(path)
        self.error = error
        self._archive_size = os.path.getsize(self.path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, EOFError, ValueError, OverflowError, NotImplementedError, RuntimeError,
                struct.error) as exc:
            raise error(f"{self.path}: not a readable .npz archive, corrupted or truncated ({exc})") from None
        self._members = {}
        for info in self._zip.infolist():
            if info.filename.endswith(".npy"):
                self._members[info.filename[:-4]] = info
        self.files = list(self._members)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._zip.close()

    def read(self, name: str):
        info = self._members[name]
        where = f"{self.path}: {name}"
        if info.compress_size > self._archive_size:
            raise self.error(f"{where}: corrupted archive: the member claims {info.compress_size:,} compressed "
                             f"bytes but the file holds {self._archive_size:,}")
        limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED else (
            max_inflated_size(info.compress_size))
        if info.file_size > limit:
            raise self.error(f"{where}: corrupted archive: the member claims {info.file_size:,} bytes "
                             f"uncompressed from {info.compress_size:,} compressed")
        try:
            with self._zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
                else:  # 2.0 and 3.0 share the layout; 3.0 only allows UTF-8 in the header
                    shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
                if dtype.hasobject:
                    raise self.error(f"{where}: an object array, refused: loading it would need "
                                     "allow_pickle=True, i.e. running a pickle; only numeric arrays are read")
                header_bytes = f.tell()
                count = math.prod(shape)  # Python ints: cannot overflow
                declared = count * dtype.itemsize
                held = info.file_size - header_bytes
                if declared != held:
                    raise self.error(f"{where}: truncated or corrupted: its header declares shape {shape} of "
                                     f"{dtype}, i.e. {declared:,} bytes, but the archive holds {held:,}")
                out = np.empty(count, dtype=dtype)
                buffer = memoryview(out.view(np.uint8).reshape(-1)) if declared else memoryview(b"")
                filled = 0
                while filled < declared:
                    got = f.readinto(buffer[filled:])
                    if not got:
                        raise self.error(f"{where}: truncated: {filled:,} of {declared:,} bytes")
                    filled += got
        except self.error:
            raise
        # NotImplementedError: an unknown compression method; RuntimeError: an encrypted member
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error, OverflowError,
                SyntaxError, TypeError, NotImplementedError, RuntimeError, struct.error) as exc:
            raise self.error(f"{where}: damaged .npz member ({type(exc).__name__}: {exc})") from None
        return out.reshape(shape, order="F" if fortran_order else "C")
