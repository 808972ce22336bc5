"""Bytes from files: gzip sniffing, decompression, and the error every reader raises.

Compression is recognised by the gzip magic bytes, not by the file name, so a
file gunzipped but not renamed (or the reverse) still reads.
"""
from __future__ import annotations

import gzip
import os
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
