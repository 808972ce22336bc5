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


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    ``os.umask`` can only be read by setting it; between the two calls another
    thread creating a file would get the wrong mode. Linux reports it in
    ``/proc/self/status``, so that is read first.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _target(path: Path) -> Path:
    """The file a write to ``path`` must replace: a symlink's target, so the link stays a link."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; on success, fsync it and rename it over ``path``.

    If the body raises (a full disk, Ctrl-C, a bug) the temporary file is removed
    and ``path`` keeps its previous content. The rename is atomic on POSIX and
    Windows when both names are on one file system, which the shared directory
    guarantees. A process killed outright (SIGKILL, power loss) cannot remove
    its temporary ``.NAME.*.tmp`` file, but ``path`` is still the old or the new
    file, whole.

    The saved file has the permissions a plain ``open(path, "w")`` would leave:
    an existing file keeps its mode, a new one gets ``0o666`` less the umask
    (``mkstemp`` creates ``0o600``, which would otherwise survive the rename).
    When ``path`` is a symlink its target is replaced and the link kept.

    Raises
    ------
    FileNotFoundError
        The directory does not exist.
    OSError (PermissionError for a read-only directory, ENOSPC for a full disk ...)
        Same class and ``errno`` as the system's error, with a message naming
        ``path`` and saying that its previous content is unchanged.
    """
    path = Path(path)
    target = _target(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"{path}: the directory {directory} does not exist")
    try:
        file_mode = os.stat(target).st_mode & 0o7777
        existed = True
    except FileNotFoundError:
        file_mode = 0o666 & ~current_umask()
        existed = False
    except OSError as exc:  # a symlink loop, a directory we may not search
        raise _explained(exc, path, path.is_symlink()) from exc
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _explained(exc, path, existed) from exc
    try:
        with os.fdopen(fd, mode) as f:
            os.chmod(tmp, file_mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
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
