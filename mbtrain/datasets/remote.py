"""Fetching data files from mirrors with pooch: hash-checked, atomic, with a progress bar.

:func:`pooch.retrieve` streams each file into a temporary file beside its
final name, checks its hash and only then moves it into place (a rename within
one directory, atomic on POSIX and Windows); a failed or interrupted download
deletes the temporary file, so a reader never sees half a file and a good copy
already there is kept. What pooch leaves to its callers is done here: trying
several mirrors in turn, the cache location (chosen by
:func:`mbtrain.datasets.catalog.cache_dir`, not pooch's), and errors that list
every URL tried and why it failed.

pooch is an optional dependency (``pip install mbtrain[download]``): the
shipped digits and Debian's Fashion-MNIST need no download, so it is imported
only when a download is wanted.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm import tqdm  # the text bar: tqdm.auto wants ipywidgets in notebooks

from .._version import __version__
from ._io import as_path

CHUNK_BYTES = 1 << 16  # pooch's default, 1 KiB, makes a 30 MB file 30,000 writes
_MD5_HEX = re.compile(r"[0-9a-f]{32}")
# urllib3's words for a body cut short: "IncompleteRead(128000 bytes read, 128000 more expected)"
_INCOMPLETE = re.compile(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)")
INSTALL_HINT = "pip install mbtrain[download]"


class DownloadError(OSError):
    """No mirror delivered a file with the expected checksum; the message lists every attempt."""


def md5sum(path) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Bar:
    """The progress bar pooch drives (``total``, ``update``, ``reset``, ``close``), drawn by tqdm.

    The tqdm bar is made once pooch knows the size: a tqdm without a total has
    no truth value, which pooch tests. ``show`` None hides it when stderr is not
    a terminal.
    """

    def __init__(self, label: str, show: bool | None):
        self.label, self.show, self._bar = label, show, None

    def __bool__(self):
        return True

    @property
    def total(self):
        return None if self._bar is None else self._bar.total

    @total.setter
    def total(self, total):
        self._bar = tqdm(total=total or None, desc=self.label, unit="B", unit_scale=True, unit_divisor=1024,
                         disable=None if self.show is None else not self.show, leave=False)

    def update(self, n):
        self._bar.update(n)

    def reset(self):
        self._bar.reset()

    def close(self):
        self._bar.close()


class _Received:
    """pooch's HTTP downloader, noting the size and MD5 of what arrived before pooch checks (and deletes) it."""

    def __init__(self, downloader):
        self.downloader, self.size, self.md5 = downloader, None, None

    def __call__(self, url, output_file, pooch):
        self.downloader(url, output_file, pooch)
        self.size, self.md5 = os.path.getsize(output_file), md5sum(output_file)


def _pooch():
    try:
        import pooch
    except ImportError:
        raise DownloadError(f"downloading needs the optional package pooch: {INSTALL_HINT}") from None
    return pooch


def _socket_error(exc) -> OSError | None:
    """The socket's own error under the layers requests and urllib3 wrap it in (refused, no DNS, timed out)."""
    seen, todo = set(), [exc]
    while todo:
        error = todo.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if type(error).__module__ == "builtins" or type(error).__module__ == "socket":
            if isinstance(error, OSError) and (error.errno is not None or isinstance(error, TimeoutError)):
                return error
        todo += [error.__cause__, error.__context__, getattr(error, "reason", None)]
        todo += [arg for arg in getattr(error, "args", ()) if isinstance(arg, BaseException)]
    return None


def _why(exc, expected_md5: str, received) -> str:
    """One mirror's failure, in words: HTTP status, a body cut short, a checksum mismatch, no connection."""
    response = getattr(exc, "response", None)  # requests.HTTPError
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code} {response.reason}"
    if received.md5 is not None and received.md5 != expected_md5:
        return (f"checksum mismatch: MD5 of the {received.size:,} bytes received is {received.md5}, "
                f"expected {expected_md5}")
    text = str(exc)
    cut = _INCOMPLETE.search(text)
    if cut:  # requests never returns a short body silently: urllib3 checks it against Content-Length
        got, more = int(cut.group(1)), int(cut.group(2))
        return f"truncated: connection closed after {got:,} of {got + more:,} bytes"
    socket_error = _socket_error(exc)
    if socket_error is not None:
        return f"cannot connect ({socket_error.strerror or socket_error})"
    return text or type(exc).__name__


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
        under ``filename``; an existing file of that name with the right MD5 is
        kept as it is (no request), one with another is replaced.
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
        Every mirror failed (the message lists each URL tried and why), or
        pooch is not installed (the message says ``pip install mbtrain[download]``).
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
    pooch = _pooch()
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / filename

    failures = []
    for mirror in mirrors:
        url = (mirror if mirror.endswith("/") else mirror + "/") + filename
        downloader = _Received(pooch.HTTPDownloader(progressbar=_Bar(filename, progress), timeout=timeout,
                                                    chunk_size=CHUNK_BYTES,
                                                    headers={"User-Agent": f"mbtrain/{__version__}"}))
        try:
            pooch.retrieve(url, known_hash=f"md5:{md5}", fname=filename, path=dest_dir, downloader=downloader)
        except (ValueError, OSError) as exc:  # requests' errors are OSErrors; a wrong hash is a ValueError
            failures.append(f"{url}: {_why(exc, md5, downloader)}")
            continue
        os.chmod(final, 0o644)  # pooch's temporary file was private; a data file need not be
        return final
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
