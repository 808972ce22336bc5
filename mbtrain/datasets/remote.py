"""Fetching data files from mirrors: checksum-verified, atomic, with a progress bar.

A file appears under its final name only once it is complete and verified: it
is streamed into a hidden temporary file in the same directory, its MD5
checked, flushed to disk (``fsync``), and then renamed with ``os.replace``,
which is atomic on POSIX and Windows. An interrupted or failed download leaves
nothing behind, and a reader never sees half a file.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm import tqdm  # the text bar: tqdm.auto wants ipywidgets in notebooks

from .._version import __version__
from ._io import as_path

CHUNK_BYTES = 1 << 16
_MD5_HEX = re.compile(r"[0-9a-f]{32}")


class DownloadError(OSError):
    """No mirror delivered a file with the expected checksum; the message lists every attempt."""


class _Rejected(Exception):
    """A mirror answered, but with the wrong bytes."""


def md5sum(path) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform or filesystem.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fetch(url: str, out, md5: str, label: str, progress, timeout: float) -> None:
    """Stream ``url`` into the open binary file ``out``, checking length and MD5."""
    request = urllib.request.Request(url, headers={"User-Agent": f"mbtrain/{__version__}"})
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = response.length  # Content-Length, or None
        # disable=None lets tqdm hide the bar when stderr is not a terminal.
        with tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                  disable=None if progress is None else not progress, leave=False) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        # http.client returns a short body silently when the connection drops.
        raise _Rejected(f"truncated: connection closed after {received:,} of {total:,} bytes")
    if digest.hexdigest() != md5:
        raise _Rejected(f"checksum mismatch: MD5 of the {received:,} bytes received is {digest.hexdigest()}, "
                        f"expected {md5}")


def download_file(filename: str, md5: str, mirrors: Sequence[str], dest_dir, *,
                  progress: bool | None = None, timeout: float = 60.0) -> Path:
    """Download ``filename`` into ``dest_dir`` from the first mirror that delivers it intact.

    Parameters
    ----------
    filename : str
        A plain file name (no directory part); the URL is ``mirror + filename``.
    md5 : str
        The expected MD5, 32 hex digits. A file that does not match is discarded
        and the next mirror is tried.
    mirrors : sequence of str
        Base URLs, tried in order (a missing trailing ``/`` is added).
    dest_dir : str or os.PathLike
        Created if needed. Only a complete, verified file ever appears there
        under ``filename``; an existing file of that name is replaced.
    progress : bool or None
        Show a tqdm progress bar; ``None`` (default): only when stderr is a terminal.
    timeout : float
        Seconds without data before a connection is abandoned.

    Returns
    -------
    Path
        ``dest_dir / filename``.

    Raises
    ------
    DownloadError (an OSError)
        Every mirror failed; the message lists each URL tried and why.
    """
    if not isinstance(filename, str) or not filename or Path(filename).name != filename or filename in (".", ".."):
        raise ValueError(f"filename: must be a plain file name, got {filename!r}")
    md5 = str(md5).lower()
    if not _MD5_HEX.fullmatch(md5):
        raise ValueError(f"md5: must be 32 hexadecimal digits, got {md5!r}")
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    if not mirrors:
        raise ValueError("mirrors: need at least one base URL")
    dest_dir = as_path(dest_dir, "dest_dir")
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / filename

    failures = []
    for mirror in mirrors:
        url = mirror if mirror.endswith("/") else mirror + "/"
        url += filename
        fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                _fetch(url, out, md5, filename, progress, timeout)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp makes it private; a data file need not be
            os.replace(tmp_name, final)
            _fsync_dir(dest_dir)
            return final
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
        except urllib.error.URLError as exc:
            failures.append(f"{url}: {exc.reason}")
        except (_Rejected, http.client.HTTPException, OSError) as exc:
            failures.append(f"{url}: {str(exc) or type(exc).__name__}")
        finally:
            # Reached on failure and on KeyboardInterrupt alike: no partial file survives.
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
    tried = "\n  ".join(failures)
    raise DownloadError(f"could not download {filename} into {dest_dir}; tried:\n  {tried}")


def download(files: Mapping[str, str], mirrors: Sequence[str], dest_dir, *,
             progress: bool | None = None, timeout: float = 60.0) -> list[Path]:
    """Download several files, each as :func:`download_file` does.

    Parameters
    ----------
    files : mapping of str to str
        File name -> expected MD5 (32 hex digits).
    mirrors, dest_dir, progress, timeout
        As for :func:`download_file`.

    Returns
    -------
    list of Path, in the order of ``files``.
    """
    return [download_file(name, md5, mirrors, dest_dir, progress=progress, timeout=timeout)
            for name, md5 in files.items()]
