"""Bytes from files: gzip sniffing, decompression, checked ``.npz`` members, and the error every reader raises.

Compression is recognised by the gzip magic bytes, not by the file name, so a
file gunzipped but not renamed (or the reverse) still reads.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

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


def gunzip(path: Path) -> bytes:
    """The decompressed content of a gzip file, with clear errors for damaged files.

    Memory is bounded by what the file really holds, never by a size some header
    claims.
    """
    try:
        return gzip.decompress(path.read_bytes())
    except EOFError:
        raise DataFormatError(f"{path}: truncated gzip file (the compressed stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataFormatError(f"{path}: corrupted gzip file ({exc})") from None


# Deflate cannot expand data by more than about 1032:1; a zip member that claims
# more is lying about its size (a "zip bomb" header), whatever it really holds.
_MAX_DEFLATE_RATIO = 1100


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
        import zipfile

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
        import zipfile

        import numpy as np

        info = self._members[name]
        where = f"{self.path}: {name}"
        if info.compress_size > self._archive_size:
            raise self.error(f"{where}: corrupted archive: the member claims {info.compress_size:,} compressed "
                             f"bytes but the file holds {self._archive_size:,}")
        limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED else (
            info.compress_size * _MAX_DEFLATE_RATIO + 1024)
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
