"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _explained(exc: OSError, path: Path, existed: bool) -> OSError:
    """``exc`` again (same class and errno, so ``except PermissionError`` still works), naming ``path``."""
    kept = "the previous file is unchanged" if existed else "nothing was written"
    reason = exc.strerror or str(exc)
    return type(exc)(exc.errno, f"{path}: could not save ({reason}); {kept}")


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; on success, fsync it and rename it over ``path``.

    If the body raises (a full disk, Ctrl-C, a bug) the temporary file is removed
    and ``path`` keeps its previous content. The rename is atomic on POSIX and
    Windows when both names are on one file system, which the shared directory
    guarantees. A process killed outright (SIGKILL, power loss) cannot remove
    its temporary ``.NAME.*.tmp`` file, but ``path`` is still the old or the new
    file, whole.

    Raises
    ------
    FileNotFoundError
        The directory does not exist.
    OSError (PermissionError for a read-only directory, ENOSPC for a full disk ...)
        Same class and ``errno`` as the system's error, with a message naming
        ``path`` and saying that its previous content is unchanged.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"{path}: the directory {directory} does not exist")
    existed = path.exists()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _explained(exc, path, existed) from exc
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise _explained(exc, path, existed) from exc
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
