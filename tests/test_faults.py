"""Faults during long work: a save killed at any byte, a full disk, a read-only directory.

In every case the file that was there before stays whole and loads; a new
file appears only whole.
"""
import errno
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

import mbtrain
from mbtrain import _atomic

SIZES = [784, 200, 10]  # 159,010 parameters: a save takes long enough to be killed in the middle


def constant_net(value, sizes=SIZES):
    net = mbtrain.Network(sizes, dtype="float64", seed=0)
    net.params[...] = value
    return net


def saved_value(path):
    """The one value every parameter of the model at ``path`` holds (each save writes a constant)."""
    params = mbtrain.load(path).params
    assert params.min() == params.max(), "a mixture of two saves: the file was torn"
    return float(params[0])


def leftovers(directory, name):
    return [p for p in os.listdir(directory) if p.startswith(f".{name}.") and p.endswith(".tmp")]


# -- killed at a random byte ----------------------------------------------------

SAVER = textwrap.dedent("""
    import sys
    import mbtrain
    path, fmt = sys.argv[1], sys.argv[2]
    net = mbtrain.Network({sizes}, dtype="float64", seed=0)
    k = 1
    print("ready", flush=True)
    while True:
        net.params[...] = k
        net.save(path, format=fmt)
        k += 1
""")


@pytest.mark.parametrize("fmt", ["npz", "network2"])
def test_save_killed_at_random_times_leaves_the_old_or_the_new_model(tmp_path, fmt):
    path = tmp_path / f"model.{fmt}"
    constant_net(0.0).save(path, format=fmt)
    script = tmp_path / "saver.py"
    script.write_text(SAVER.format(sizes=SIZES))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, str(script), str(path), fmt], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.6))  # several saves, then one cut at a random byte
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        seen.add(saved_value(path))  # loads, and holds one whole save
    assert seen - {0.0}, "no save finished before the kill: the test proves nothing"
    # A killed process cannot remove its temporary file; it never has the model's name.
    assert all(name.endswith(".tmp") for name in leftovers(tmp_path, path.name))


# -- a full disk ------------------------------------------------------------------

class FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes, like a disk that fills up."""

    def __init__(self, f, room):
        self._f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):  # flush, fileno, seek, tell, close ...
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.mark.parametrize("fmt", ["npz", "network2"])
@pytest.mark.parametrize("fraction", [0, 0.01, 0.5, 0.99])
def test_disk_full_while_writing_keeps_the_previous_file(tmp_path, monkeypatch, fmt, fraction):
    path = constant_net(1.0, [20, 10, 3]).save(tmp_path / f"model.{fmt}", format=fmt)
    room = int(fraction * path.stat().st_size)  # the disk fills up that far into the new file
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        return FullDisk(real_fdopen(fd, mode, *args, **kwargs), room)

    monkeypatch.setattr(_atomic.os, "fdopen", fdopen)
    with pytest.raises(OSError, match=rf"{path}: could not save .*the previous file is unchanged") as info:
        constant_net(2.0, [20, 10, 3]).save(path, format=fmt)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert saved_value(path) == 1.0
    assert leftovers(tmp_path, path.name) == []


def test_disk_full_at_fsync_keeps_the_previous_file(tmp_path, monkeypatch):
    path = constant_net(1.0, [20, 10, 3]).save(tmp_path / "model.npz")

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    with pytest.raises(OSError, match="could not save") as info:
        constant_net(2.0, [20, 10, 3]).save(path)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert saved_value(path) == 1.0
    assert leftovers(tmp_path, path.name) == []


def test_disk_full_at_a_checkpoint_stops_training_with_the_last_checkpoint_intact(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 5)), rng.integers(0, 3, 40)
    net = mbtrain.Network([5, 4, 3], seed=0)
    checkpoint = tmp_path / "ckpt.npz"
    real_fsync = os.fsync
    saves = []

    def fsync(fd):
        saves.append(fd)
        if len(saves) > 4:  # two per save (file, directory): epochs 1 and 2 are saved, epoch 3's is not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    with pytest.raises(OSError, match=f"{checkpoint}: could not save"):
        net.fit(X, y, epochs=5, batch_size=8, eta=0.5, checkpoint=checkpoint, progress=False)
    monkeypatch.undo()
    restored = mbtrain.load(checkpoint)
    assert list(restored.history["epoch"]) == [1, 2]
    assert leftovers(tmp_path, checkpoint.name) == []


# -- a read-only directory ---------------------------------------------------

@pytest.mark.parametrize("error", [errno.EACCES, errno.EROFS])
def test_read_only_directory_is_a_clear_error_and_keeps_the_file(tmp_path, monkeypatch, error):
    """Simulated (tests often run as root, whom chmod does not stop): creating the temporary file fails."""
    path = constant_net(1.0, [6, 3]).save(tmp_path / "model.npz")

    def mkstemp(*args, **kwargs):
        raise (PermissionError if error == errno.EACCES else OSError)(error, os.strerror(error), str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(OSError, match=rf"{path}: could not save \({os.strerror(error)}\); the previous") as info:
        constant_net(2.0, [6, 3]).save(path)
    assert info.value.errno == error
    if error == errno.EACCES:
        assert isinstance(info.value, PermissionError)  # `except PermissionError` still works
    monkeypatch.undo()
    assert saved_value(path) == 1.0


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_really_read_only_directory(tmp_path):
    path = constant_net(1.0, [6, 3]).save(tmp_path / "model.npz")
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="could not save"):
            constant_net(2.0, [6, 3]).save(path)
    finally:
        tmp_path.chmod(0o755)
    assert saved_value(path) == 1.0


def test_a_new_file_that_fails_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(_atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    path = tmp_path / "new.npz"
    with pytest.raises(OSError, match="nothing was written"):
        constant_net(1.0, [6, 3]).save(path)
    assert not path.exists() and leftovers(tmp_path, path.name) == []
