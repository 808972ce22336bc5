"""Saved files and the train/evaluate commands, hardened (issues 15 and 16).

File modes and symlinks of atomic saves; loads that refuse values a cast turns
into inf, oversized integers, non-numeric network2 values and broken
histories; ``mbtrain train`` on an unwritable ``--out``, on a full disk, on
Ctrl-C; ``--data-dir`` and ``--sizes`` said, not silently overridden; the test
cost named apart from the history's L2-including loss.
"""
import errno
import gzip
import json
import os
import stat

import numpy as np
import pandas as pd
import pytest

import mbtrain
from mbtrain import _atomic
from mbtrain.backends import BACKENDS
from mbtrain.cli import main
from mbtrain.commands._data import resolve_sizes
from mbtrain.serialization import ModelFormatError


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, restored afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


# -- 1. modes and symlinks -----------------------------------------------------------

@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_mode_open_would_give(tmp_path, umask, mask, expected):
    umask(mask)
    path = mbtrain.Network([4, 3]).save(tmp_path / "model.npz")
    with open(tmp_path / "plain", "w"):
        pass
    assert mode_of(path) == expected == mode_of(tmp_path / "plain")
    assert mode_of(mbtrain.Network([4, 3]).save(tmp_path / "m.json", format="network2")) == expected


def test_an_existing_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    path = mbtrain.Network([4, 3]).save(tmp_path / "model.npz")
    path.chmod(0o640)
    net = mbtrain.Network([4, 3], seed=1)
    net.save(path)
    assert mode_of(path) == 0o640
    np.testing.assert_array_equal(mbtrain.load(path).params, net.params)
    with _atomic.atomic_write(path, "wb") as f:  # what a resumed results.csv goes through
        f.write(b"x")
    assert mode_of(path) == 0o640


def test_a_symlink_is_written_through_to_its_target(tmp_path, umask):
    umask(0o022)
    (tmp_path / "runs").mkdir()
    target = mbtrain.Network([4, 3]).save(tmp_path / "runs" / "real.npz")
    target.chmod(0o640)
    link = tmp_path / "model.npz"
    link.symlink_to(os.path.join("runs", "real.npz"))  # relative, as `ln -s` makes them
    net = mbtrain.Network([4, 3], seed=7)
    net.save(link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("runs", "real.npz")
    np.testing.assert_array_equal(mbtrain.load(target).params, net.params)
    assert mode_of(target) == 0o640
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["real.npz"]  # no temporary file left


def test_a_dangling_symlink_creates_its_target(tmp_path, umask):
    umask(0o022)
    link = tmp_path / "model.npz"
    link.symlink_to(tmp_path / "new.npz")
    mbtrain.Network([4, 3]).save(link)
    assert link.is_symlink() and (tmp_path / "new.npz").is_file()
    assert mode_of(tmp_path / "new.npz") == 0o644


def test_the_umask_is_read_with_and_without_proc(umask, monkeypatch):
    umask(0o027)
    assert _atomic.current_umask() == 0o027

    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/self/status")

    monkeypatch.setattr(_atomic, "open", no_proc, raising=False)
    assert _atomic.current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # and the fallback left it as it was


# -- 2. casts that overflow ----------------------------------------------------------

def write_model_npz(path, params, **metadata):
    meta = {"format": "mbtrain-network", "format_version": 1, "sizes": [2, 2], "cost": "quadratic",
            "init": "gaussian", "dtype": "float64"}
    meta.update(metadata)
    history = meta.pop("history", "")
    text = meta.pop("raw_metadata", None) or json.dumps(meta)
    with open(path, "wb") as f:
        np.savez(f, params=params, metadata=np.array(text), history=np.array(history))
    return path


def test_float64_values_that_overflow_float32_are_refused(tmp_path):
    net = mbtrain.Network([2, 2], dtype="float64")
    net.params[...] = 1e300
    path = net.save(tmp_path / "big.npz")
    assert mbtrain.load(path).params[0] == 1e300  # fine as saved
    with pytest.raises(ModelFormatError, match=rf"{path}: parameter 0 is finite as float64 but overflows float32"):
        mbtrain.load(path, dtype="float32")
    # float64 parameters under metadata that says float32
    lying = write_model_npz(tmp_path / "lying.npz", np.full(6, 1e300), dtype="float32")
    with pytest.raises(ModelFormatError, match=f"{lying}: .*overflows float32"):
        mbtrain.load(lying)


def test_network2_values_that_overflow_float32_are_refused(tmp_path):
    path = tmp_path / "book.json"
    path.write_text(json.dumps({"sizes": [2, 1], "weights": [[[1e300, 0.5]]], "biases": [[[0.0]]],
                                "cost": "QuadraticCost"}))
    assert mbtrain.load(path).weights[0][0, 0] == 1e300
    with pytest.raises(ModelFormatError, match=f"{path}: .*overflows float32"):
        mbtrain.load(path, dtype="float32")


# -- 3. huge integers, non-numbers, broken histories ---------------------------------

def test_a_5000_digit_integer_is_refused_naming_the_file(tmp_path):
    huge = "9" * 5000
    book = tmp_path / "book.json"
    book.write_text('{"sizes": [2, 1], "weights": [[[' + huge + ', 1.0]]], "biases": [[[0.0]]], '
                    '"cost": "QuadraticCost"}')
    with pytest.raises(ModelFormatError, match=f"{book}: not valid JSON.*digits"):
        mbtrain.load(book)
    npz = write_model_npz(tmp_path / "m.npz", np.zeros(6),
                          raw_metadata='{"format": "mbtrain-network", "format_version": ' + huge + "}")
    with pytest.raises(ModelFormatError, match=f"{npz}: corrupted model metadata.*digits"):
        mbtrain.load(npz)


@pytest.mark.parametrize("layer, field, value", [
    (0, "weights", '"1"'), (0, "weights", "true"), (1, "biases", "false"), (1, "weights", "null"),
    (0, "biases", '{"a": 1}'),
])
def test_network2_values_must_be_numbers(tmp_path, layer, field, value):
    model = {"sizes": [2, 2, 1], "weights": [[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.6]]],
             "biases": [[[0.0], [0.0]], [[0.0]]], "cost": "CrossEntropyCost"}
    model[field][layer][0][0] = "__X__"
    path = tmp_path / "book.json"
    path.write_text(json.dumps(model).replace('"__X__"', value))
    with pytest.raises(ModelFormatError, match=f"{path}: layer {layer} {field} must be nested lists of numbers"):
        mbtrain.load(path)


@pytest.mark.parametrize("history, problem", [
    ("seconds,train_loss\n0.1,0.5\n", "no epoch column"),
    ("epoch,train_loss\n1,0.5\n", "no seconds column"),
    ("epoch,seconds\n2,0.1\n1,0.1\n", "epochs must be increasing whole numbers"),
    ("epoch,seconds\n1.5,0.1\n", "epochs must be increasing whole numbers"),
    ("epoch,seconds\n0,0.1\n", "epochs must be increasing whole numbers"),
    ("epoch,seconds\n" + "9" * 5000 + ",0.1\n", "epochs must be increasing whole numbers"),
])
def test_a_broken_history_is_refused_at_load(tmp_path, history, problem):
    path = write_model_npz(tmp_path / "m.npz", np.zeros(6), history=history)
    with pytest.raises(ModelFormatError, match=f"{path}: corrupted training history.*{problem}"):
        mbtrain.load(path)


def test_a_saved_history_continues_its_epochs(tmp_path):
    path = write_model_npz(tmp_path / "m.npz", np.zeros(6), history="epoch,seconds\n1,0.1\n2,0.1\n")
    net = mbtrain.load(path)
    rng = np.random.default_rng(0)
    net.fit(rng.random((10, 2)), rng.integers(0, 2, 10), epochs=1, batch_size=5, eta=0.1, progress=False)
    assert list(net.history["epoch"]) == [1, 2, 3]


# -- 4. --out that cannot be written -------------------------------------------------

def one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for fragment in fragments:
        assert fragment in err[0]
    return err[0]


def test_out_pointing_at_a_directory_is_refused_up_front(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--out", str(tmp_path), "--quiet"]) == 2
    one_line_error(capsys, f"--out: {tmp_path} is a directory")
    (tmp_path / "file").write_text("")
    assert main(["train", "--dataset", "digits", "--out", str(tmp_path / "file" / "m.npz"), "--quiet"]) == 2
    one_line_error(capsys, "is a file, not a directory")


def test_a_full_disk_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    out = tmp_path / "m.npz"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--out", str(out), "--quiet"]) == 2
    one_line_error(capsys, f"{out}: could not save ({os.strerror(errno.ENOSPC)}); nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_full_disk_at_the_history_keeps_a_matching_pair(tmp_path, capsys, monkeypatch):
    """Epoch 2's model is saved, its history is not: the history on disk is epoch 1's, the error one line."""
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        # two fsyncs a file (itself, its directory): epoch 1 model + history, epoch 2 model, then full
        if len(calls) == 7:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    out = tmp_path / "m.npz"
    assert main(["train", "--dataset", "digits", "--epochs", "3", "--out", str(out), "--quiet"]) == 2
    one_line_error(capsys, "m.history.csv: could not save", "the previous file is unchanged")
    assert list(pd.read_csv(tmp_path / "m.history.csv")["epoch"]) == [1]
    assert list(mbtrain.load(out).history["epoch"]) == [1, 2]


# -- 5. the history: atomic, each epoch, on Ctrl-C, never stale -------------------

@pytest.fixture
def interrupt_at_epoch(monkeypatch):
    """Ctrl-C in the middle of epoch ``k`` of the numpy backend (with --quiet: one call an epoch)."""
    def arm(k, on_epoch=None):
        backend = BACKENDS["numpy"]
        real, calls = backend.sgd_epoch, []

        def sgd_epoch(*args, **kwargs):
            calls.append(1)
            if on_epoch is not None:
                on_epoch(len(calls))
            if len(calls) == k:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(backend, "sgd_epoch", sgd_epoch)
    return arm


def write_stale_history(path, epochs=200):
    pd.DataFrame({"epoch": range(1, epochs + 1), "seconds": 0.1}).to_csv(path, index=False)


def test_ctrl_c_writes_the_history_of_the_completed_epochs(tmp_path, capsys, interrupt_at_epoch):
    out = tmp_path / "m.npz"
    write_stale_history(tmp_path / "m.history.csv")
    interrupt_at_epoch(3)
    code = main(["train", "--dataset", "digits", "--epochs", "10", "--backend", "numpy", "--out", str(out),
                 "--quiet"])
    assert code == 130
    assert "history of the 2 completed epochs" in capsys.readouterr().err
    history = pd.read_csv(tmp_path / "m.history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert list(mbtrain.load(out).history["epoch"]) == [1, 2]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_history_on_disk_follows_the_model_epoch_by_epoch(tmp_path, interrupt_at_epoch):
    out, seen = tmp_path / "m.npz", {}
    write_stale_history(tmp_path / "m.history.csv")

    def look(epoch):  # called as epoch `epoch` starts: the files hold epoch - 1
        history = tmp_path / "m.history.csv"
        seen[epoch] = (list(pd.read_csv(history)["epoch"]) if history.exists() else None,
                       list(mbtrain.load(out).history["epoch"]) if out.exists() else None)

    interrupt_at_epoch(4, on_epoch=look)
    assert main(["train", "--dataset", "digits", "--epochs", "5", "--backend", "numpy", "--out", str(out),
                 "--quiet"]) == 130
    assert seen[1] == (None, None)  # the stale 200-epoch history is gone before training starts
    assert seen[2] == ([1], [1])
    assert seen[3] == ([1, 2], [1, 2])


def test_ctrl_c_before_any_epoch_leaves_no_stale_history(tmp_path, capsys, interrupt_at_epoch):
    out = tmp_path / "m.npz"
    write_stale_history(tmp_path / "m.history.csv")
    interrupt_at_epoch(1)
    assert main(["train", "--dataset", "digits", "--epochs", "3", "--backend", "numpy", "--out", str(out),
                 "--quiet"]) == 130
    assert not (tmp_path / "m.history.csv").exists() and not out.exists()


def test_a_finished_run_replaces_the_stale_history(tmp_path, capsys):
    out = tmp_path / "m.npz"
    write_stale_history(tmp_path / "m.history.csv")
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    assert list(pd.read_csv(tmp_path / "m.history.csv")["epoch"]) == [1, 2]


# -- 6. --data-dir and --sizes said, never silently overridden ---------------------

def idx_bytes(items):
    header = bytes([0, 0, 0x08, items.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in items.shape)
    return header + items.tobytes()


def write_idx_set(directory, n_train=30, n_test=10):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 4, 3), dtype=np.uint8),
              "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 4, 3), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8)}
    for name, items in arrays.items():
        (directory / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(items)))


@pytest.fixture
def search_path(tmp_path, monkeypatch):
    """$MBTRAIN_DATA holds a tiny mnist; the cache is empty; no system directories."""
    from mbtrain.datasets import catalog

    monkeypatch.setenv("MBTRAIN_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, spec in catalog.IDX_DATASETS.items():
        monkeypatch.setitem(catalog.IDX_DATASETS, name,
                            catalog.IdxDataset(spec.name, spec.title, spec.mirrors, spec.md5))
    write_idx_set(tmp_path / "env" / "mnist")
    return tmp_path


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_a_missing_data_dir_is_an_error(tmp_path, capsys, dataset):
    missing = tmp_path / "nonexistent"
    assert main(["train", "--dataset", dataset, "--data-dir", str(missing), "--quiet"]) == 2
    one_line_error(capsys, f"--data-dir: {missing} is not a directory")


@pytest.mark.parametrize("dataset", ["digits", "synthetic"])
def test_data_dir_for_a_set_not_read_from_files_is_an_error(tmp_path, capsys, dataset):
    assert main(["train", "--dataset", dataset, "--data-dir", str(tmp_path), "--quiet"]) == 2
    one_line_error(capsys, f"--data-dir: {dataset} is", "not read from files")


def test_train_says_which_files_and_sizes_it_used(search_path, capsys):
    mine = search_path / "mine"
    write_idx_set(mine)
    assert main(["train", "--dataset", "mnist", "--data-dir", str(mine), "--validation", "0",
                 "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"data: mnist from {mine}\n" in out
    assert "sizes 12,30,10 (default for mnist: 12 inputs, 10 classes)" in out


def test_files_found_elsewhere_than_data_dir_are_named(search_path, capsys):
    empty = search_path / "empty"
    empty.mkdir()
    path = mbtrain.Network([12, 5, 10]).save(search_path / "m.npz")
    assert main(["evaluate", str(path), "--dataset", "mnist", "--data-dir", str(empty)]) == 0
    out = capsys.readouterr().out
    assert f"data: mnist from {search_path / 'env' / 'mnist'} (not in --data-dir {empty}" in out
    assert "on 10 test rows of mnist" in out


def test_resolve_sizes_adapts_only_the_default():
    assert resolve_sizes(None, 64, 10, dataset="digits") == ([64, 30, 10], "default for digits: 64 inputs, 10 classes")
    assert resolve_sizes([64, 100, 50, 10], 64, 10) == ([64, 100, 50, 10], "given")
    with pytest.raises(ValueError, match="--sizes: the input width is 784 but digits rows have 64 features; "
                                         "use 64,30,10 or leave --sizes out"):
        resolve_sizes([784, 30, 10], 64, 10, dataset="digits")
    with pytest.raises(ValueError, match="--sizes: the output width is 4 but digits has 10 classes"):
        resolve_sizes([64, 30, 4], 64, 10, dataset="digits")


def test_train_refuses_given_sizes_whose_output_does_not_fit(capsys):
    assert main(["train", "--dataset", "digits", "--sizes", "64,30,12", "--quiet"]) == 2
    one_line_error(capsys, "--sizes: the output width is 12 but digits has 10 classes")


# -- 7. the test cost, named apart from the L2-including loss -----------------------

def test_evaluate_and_train_name_the_cost_without_l2(tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--lmbda", "5", "--out", str(out),
                 "--quiet"]) == 0
    train_out = capsys.readouterr().out
    assert "train_loss, val_loss: the mean cost plus the L2 term" in train_out
    assert main(["evaluate", str(out), "--dataset", "digits"]) == 0
    text = capsys.readouterr().out
    assert "test loss" not in text
    net = mbtrain.load(out)
    X_test, y_test = mbtrain.datasets.load("digits")[2:]
    expected = f"test cost {net.loss(X_test, y_test):.4f} (mean quadratic cost, no L2 term)"
    assert expected in text and expected in train_out
    # and it is not the L2-including number
    assert f"{net.loss(X_test, y_test, lmbda=5.0, n=1347):.4f}" != f"{net.loss(X_test, y_test):.4f}"


def test_a_run_refused_before_training_keeps_the_earlier_history(tmp_path, capsys):
    out = tmp_path / "m.npz"
    write_stale_history(tmp_path / "m.history.csv", epochs=3)
    assert main(["train", "--dataset", "digits", "--backend", "cuda", "--out", str(out), "--quiet"]) == 2
    one_line_error(capsys, "backend: unknown backend 'cuda'")
    assert len(pd.read_csv(tmp_path / "m.history.csv")) == 3  # nothing started, nothing destroyed
