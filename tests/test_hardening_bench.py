"""bench and sweep run safely and say what they did (issues 15 and 16).

Resumes compare every setting that changes a result, the data included; a
run that cannot start destroys nothing; one folder has one writer at a time;
a killed sweep leaves no worker computing; explicit options beat presets and
are never rewritten; Ctrl-C while the report is written still leaves one.
"""
import gzip
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mbtrain.bench.cli import _error
from mbtrain.bench.data import BenchData, fingerprint, load_data
from mbtrain.bench.results import LOCK_NAME, FolderInUseError, folder_lock
from mbtrain.bench.sweep import sweep
from mbtrain.bench.throughput import bench
from mbtrain.cli import build_parser, main
from mbtrain.synthetic import make_blobs

report_module = importlib.import_module("mbtrain.bench.report")
sweep_module = importlib.import_module("mbtrain.bench.sweep")  # mbtrain.bench.sweep is also the function

SIZES = [64, 8, 10]
TIMING = ["seconds", "seconds_to_target", "epoch_seconds", "examples_per_second", "compile_seconds",
          "warmup_seconds"]
SWEEP_OPTIONS = dict(batch_sizes=[20, 100], seeds=1, max_epochs=2, target=0.6, progress=False, write_report=False)
SWEEP_ARGV = ["sweep", "--dataset", "synthetic", "--sizes", "64,8,10", "--batch-sizes", "20,100", "--seeds", "1",
              "--max-epochs", "1", "--target", "0.5", "--no-progress"]
BENCH_ARGV = ["bench", "--dataset", "synthetic", "--sizes", "64,8,10", "--arms", "numpy", "--dtype", "float32",
              "--batch-sizes", "100", "--repeats", "1", "--no-progress"]


def blobs(rows=400, seed=0, name="synthetic"):
    X, y = make_blobs(n_samples=rows + 200, n_features=64, n_classes=10, spread=1.2, dtype="float64", seed=seed)
    return BenchData(name, X[:rows], y[:rows], X[rows:], y[rows:], "blobs")


def run_sweep(out, data=None, **kwargs):
    return sweep(data or blobs(), SIZES, out=out, **dict(SWEEP_OPTIONS, **kwargs))


def run_bench(out, X=None, y=None, **kwargs):
    if X is None:
        X, y = make_blobs(n_samples=300, n_features=64, n_classes=10, dtype="float64", seed=0)
    options = dict(batch_sizes=[100], arms=["numpy"], dtypes=["float32"], repeats=2, progress=False,
                   write_report=False, dataset="synthetic")
    return bench(X, y, SIZES, out=out, **dict(options, **kwargs))


def interrupt_after(kind, count):
    seen = []

    def on_row(row):
        if row["kind"] == kind:
            seen.append(row)
            if len(seen) == count:
                raise KeyboardInterrupt

    return on_row


def measured(results):
    """The sweep's rows without what depends on the clock or on how it ran, in a fixed order."""
    frame = results[results["kind"].isin(["sweep", "curve", "noise"])].drop(columns=TIMING)
    return frame.sort_values(["kind", "batch_size", "eta", "seed", "steps"]).reset_index(drop=True)


def snapshot(folder):
    """Every file of a result folder and its bytes (the lock file aside)."""
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file() and p.name != LOCK_NAME}


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- 1. a resume compares the data and every setting that changes a result --------

def test_fingerprint_tells_data_sets_apart_and_ignores_dtype():
    a, b = blobs(seed=0), blobs(seed=1)
    X32 = a.X_train.astype(np.float32)
    assert fingerprint(X32, a.y_train) == fingerprint(X32.astype(np.float64), a.y_train)  # same values
    assert fingerprint(a.X_train, a.y_train) != fingerprint(b.X_train, b.y_train)
    labels = a.y_train.copy()
    labels[-1] = (labels[-1] + 1) % 10  # one label changed
    assert fingerprint(a.X_train, a.y_train) != fingerprint(a.X_train, labels)
    assert fingerprint(a.X_train[:-1], a.y_train[:-1]) != fingerprint(a.X_train, a.y_train)


def test_sweep_resumed_on_other_data_of_the_same_row_count_is_refused(tmp_path):
    run_sweep(tmp_path, on_row=interrupt_after("sweep", 1))
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"data_fingerprint: was '[0-9a-f]+', now '[0-9a-f]+'") as info:
        run_sweep(tmp_path, data=blobs(seed=1), resume=True)
    assert "dataset" not in str(info.value).split("(", 1)[1].split(":")[0]  # the same name: only the rows differ
    with pytest.raises(ValueError, match=r"dataset: was 'synthetic', now 'other'"):
        run_sweep(tmp_path, data=blobs(name="other"), resume=True)
    assert snapshot(tmp_path) == before  # nothing was appended, truncated or rewritten


def test_sweep_resumed_with_other_threads_is_refused(tmp_path):
    run_sweep(tmp_path, on_row=interrupt_after("sweep", 1))
    with pytest.raises(ValueError, match=r"threads: was 1, now 2"):
        run_sweep(tmp_path, resume=True, threads=2)


def test_bench_resumed_with_other_threads_or_data_is_refused_naming_each_setting(tmp_path):
    run_bench(tmp_path, on_row=interrupt_after("bench", 1))
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"threads: was 1, now 2"):
        run_bench(tmp_path, resume=True, threads=2)
    X, y = make_blobs(n_samples=300, n_features=64, n_classes=10, dtype="float64", seed=5)
    with pytest.raises(ValueError) as info:
        run_bench(tmp_path, X, y, resume=True, dataset="other", threads=2)
    message = str(info.value)
    for expected in ("data_fingerprint: was", "dataset: was 'synthetic', now 'other'", "threads: was 1, now 2"):
        assert expected in message
    assert snapshot(tmp_path) == before


def test_a_resume_that_agrees_still_completes(tmp_path):
    reference = run_sweep(tmp_path / "whole").results
    run_sweep(tmp_path / "cut", on_row=interrupt_after("curve", 4))
    resumed = run_sweep(tmp_path / "cut", resume=True).results
    pd.testing.assert_frame_equal(measured(resumed), measured(reference), check_dtype=False)


def test_cli_resume_on_another_data_set_exits_2_naming_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(SWEEP_ARGV + ["--out", str(out)]) == 0
    capsys.readouterr()
    argv = [a if a != "synthetic" else "digits" for a in SWEEP_ARGV]
    assert main(argv + ["--out", str(out), "--resume"]) == 2
    line = one_error_line(capsys)
    assert "cannot resume with different settings" in line and "dataset: was 'synthetic', now 'digits'" in line


# -- 2. nothing is destroyed before the run can start --------------------------------

@pytest.fixture
def finished_sweep(tmp_path, capsys):
    out = tmp_path / "finished"
    assert main(SWEEP_ARGV + ["--out", str(out)]) == 0
    capsys.readouterr()
    return out


def test_unreachable_scheduler_leaves_a_finished_folder_untouched(finished_sweep, capsys, monkeypatch):
    monkeypatch.setattr(sweep_module, "SCHEDULER_TIMEOUT", 1)
    before = snapshot(finished_sweep)
    assert len(pd.read_csv(finished_sweep / "results.csv")) > 0
    for extra in ([], ["--resume"]):
        assert main(SWEEP_ARGV + ["--out", str(finished_sweep), "--scheduler", "tcp://127.0.0.1:1"] + extra) == 2
        assert "scheduler" in one_error_line(capsys)
        assert snapshot(finished_sweep) == before


@pytest.mark.parametrize("option, value, message", [
    ("--backend", "cuda", "backend"),
    ("--cost", "hinge", "cost"),
    ("--init", "uniform", "init"),
])
def test_a_bad_sweep_setting_leaves_a_finished_folder_untouched(finished_sweep, capsys, option, value, message):
    before = snapshot(finished_sweep)
    assert main(SWEEP_ARGV + ["--out", str(finished_sweep), option, value]) == 2
    assert message in one_error_line(capsys)
    assert snapshot(finished_sweep) == before


def test_a_bad_bench_dtype_leaves_a_finished_folder_untouched(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(BENCH_ARGV + ["--out", str(out)]) == 0
    capsys.readouterr()
    before = snapshot(out)
    assert main([a if a != "float32" else "float32,float16" for a in BENCH_ARGV] + ["--out", str(out)]) == 2
    assert "dtype" in one_error_line(capsys)
    assert snapshot(out) == before


# -- 3. one writer per folder -----------------------------------------------------------

def test_a_second_lock_on_a_folder_is_refused_naming_folder_and_pid(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(FolderInUseError, match=rf"{tmp_path}: in use by another mbtrain run \(pid {os.getpid()}\)"):
            with folder_lock(tmp_path):
                pass
    with folder_lock(tmp_path):  # released when the holder is done
        pass


def test_a_lock_held_by_a_killed_process_is_released(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom mbtrain.bench.results import folder_lock\n"
                               "with folder_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(600)\n",
         str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderInUseError, match=rf"pid {holder.pid}\)"):
            with folder_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path):
        pass


@pytest.mark.slow
def test_a_second_run_into_the_same_folder_is_refused_and_the_first_loses_nothing(tmp_path):
    out = tmp_path / "shared"
    data = load_data("synthetic", dtype="float64")
    options = dict(batch_sizes=[20, 100], seeds=1, max_epochs=1, target=0.5, progress=False, write_report=False)
    reference = sweep(data, SIZES, out=tmp_path / "alone", **options).results
    second = []

    def start_a_second_run(row):
        if not second:  # while the first run holds the folder
            second.append(subprocess.run([sys.executable, "-m", "mbtrain.cli", *SWEEP_ARGV, "--out", str(out)],
                                         capture_output=True, text=True, timeout=600))

    first = sweep(data, SIZES, out=out, on_row=start_a_second_run, **options)
    refused = second[0]
    assert refused.returncode == 2, refused.stderr
    assert f"{out}: in use by another mbtrain run (pid {os.getpid()})" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not first.interrupted
    on_disk = pd.read_csv(out / "results.csv")
    assert len(on_disk) == len(reference)
    pd.testing.assert_frame_equal(measured(on_disk), measured(reference), check_dtype=False)


# -- 4. a killed parallel sweep leaves no worker behind -----------------------------

def _stat(pid):
    """(state, parent pid, cpu seconds) of a process, from /proc; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive_with_marker(marker):
    """Pids of the live (not zombie) processes whose environment holds ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        stat = _stat(entry)
        if marker.encode() in environ and stat is not None and stat[0] not in "ZX":
            pids.append(int(entry))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_kill_9_of_a_parallel_sweep_leaves_no_worker_computing(tmp_path):
    pytest.importorskip("joblib")
    marker = f"MBTRAIN_ORPHAN_TEST={uuid.uuid4().hex}"
    env = dict(os.environ, MBTRAIN_ORPHAN_TEST=marker.split("=")[1])
    # two runs that would take hours: eta 1e-6 never reaches the target
    argv = [sys.executable, "-m", "mbtrain.cli", "sweep", "--dataset", "digits", "--sizes", "64,30,10", "--jobs", "2",
            "--batch-sizes", "1,2", "--seeds", "1", "--max-epochs", "100000", "--target", "1", "--eta", "1e-6",
            "--no-progress", "--out", str(tmp_path / "sweep")]
    log = open(tmp_path / "stderr.txt", "w")
    parent = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)
    workers = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and parent.poll() is None:
            children = [pid for pid in _alive_with_marker(marker)
                        if (_stat(pid) or ("", 0, 0))[1] == parent.pid
                        and b"popen_loky" in Path(f"/proc/{pid}/cmdline").read_bytes()]  # not its resource tracker
            if len(children) >= 2 and all((_stat(pid) or ("", 0, 0))[2] >= 3.0 for pid in children):
                workers = children  # both computing their run
                break
            time.sleep(0.2)
        assert parent.poll() is None, (tmp_path / "stderr.txt").read_text()
        assert len(workers) >= 2, "the workers did not start"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive_with_marker(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _alive_with_marker(marker) == [], "workers of the killed sweep are still running"
    finally:
        for pid in _alive_with_marker(marker):
            os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
        log.close()


# -- 5. an explicit option wins over --quick -------------------------------------------

def test_quick_sweep_keeps_explicit_seeds(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--quick", "--seeds", "3", "--batch-sizes", "200", "--max-epochs", "1", "--no-progress",
                 "--out", str(out)]) == 0
    runs = pd.read_csv(out / "results.csv").query("kind == 'sweep'")
    assert sorted(runs["seed"]) == [0, 1, 2]
    machine = json.loads((out / "machine.json").read_text())
    assert machine["dataset"] == "digits" and machine["settings"]["seeds"] == 3


def test_quick_fills_only_what_was_not_given(tmp_path, capsys):
    quick = tmp_path / "quick"
    assert main(["bench", "--quick", "--arms", "numpy", "--dtype", "float32", "--batch-sizes", "200",
                 "--no-progress", "--out", str(quick)]) == 0
    settings = json.loads((quick / "machine.json").read_text())["settings"]
    assert (settings["repeats"], settings["max_epoch_seconds"], settings["dataset"]) == (3, 0.3, "digits")
    explicit = tmp_path / "explicit"
    assert main(["bench", "--quick", "--repeats", "4", "--max-epoch-seconds", "2", "--dataset", "synthetic",
                 "--arms", "numpy", "--dtype", "float32", "--batch-sizes", "200", "--no-progress",
                 "--out", str(explicit)]) == 0
    settings = json.loads((explicit / "machine.json").read_text())["settings"]
    assert (settings["repeats"], settings["max_epoch_seconds"], settings["dataset"]) == (4, 2.0, "synthetic")
    assert len(pd.read_csv(explicit / "results.csv").query("kind == 'bench'")) == 4


# -- 6. --resume needs --out ------------------------------------------------------------

@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_resume_without_out_is_an_error(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    assert main([command, "--quick", "--resume"]) == 2
    assert "--resume: needs --out" in one_error_line(capsys)
    assert not (tmp_path / "mbtrain-results").exists()


# -- 7. explicit --sizes must fit the data; only the default adapts ---------------------

@pytest.mark.parametrize("command", ["bench", "sweep"])
@pytest.mark.parametrize("sizes, message", [
    ("784,30,10", "the input width is 784 but digits rows have 64 features; use 64,30,10"),
    ("64,30,5", "the output width is 5 but digits has 10 classes; use 64,30,10"),
])
def test_explicit_sizes_that_do_not_fit_are_an_error(tmp_path, capsys, command, sizes, message):
    assert main([command, "--dataset", "digits", "--sizes", sizes, "--out", str(tmp_path / "x")]) == 2
    line = one_error_line(capsys)
    assert "error: --sizes: " in line and message in line
    assert not (tmp_path / "x").exists()


def test_default_sizes_adapt_and_the_output_names_data_file_and_sizes(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--dataset", "digits", "--batch-sizes", "500", "--seeds", "1", "--max-epochs", "1",
                 "--no-progress", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "digits.npz" in stdout
    assert "sizes 64,30,10 (default for digits: 64 inputs, 10 classes)" in stdout
    assert json.loads((out / "machine.json").read_text())["settings"]["sizes"] == [64, 30, 10]
    assert "default for digits: 64 inputs, 10 classes" in (out / "report.md").read_text()


# -- 8. --data-dir is read, or refused ---------------------------------------------------

def _idx(items):
    header = bytes([0, 0, 0x08, items.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in items.shape)
    return header + items.tobytes()


def write_idx_set(directory, n_train=120, n_test=20):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        (directory / f"{stem}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(_idx(rng.integers(0, 256, (n, 4, 4), dtype=np.uint8))))
        (directory / f"{stem}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(_idx((np.arange(n) % 3).astype(np.uint8))))


def test_data_dir_is_read_and_named(tmp_path, capsys):
    write_idx_set(tmp_path / "mine")
    out = tmp_path / "bench"
    argv = ["bench", "--dataset", "mnist", "--data-dir", str(tmp_path / "mine"), "--arms", "numpy", "--dtype",
            "float32", "--batch-sizes", "10", "--repeats", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert str(tmp_path / "mine" / "train-images-idx3-ubyte.gz") in stdout
    assert "sizes 16,30,3" in stdout
    assert json.loads((out / "machine.json").read_text())["settings"]["rows"] == 100  # 120 minus 1/6 held out


@pytest.mark.parametrize("command", ["bench", "sweep"])
@pytest.mark.parametrize("dataset, where, message", [
    ("mnist", "missing", "is not a directory"),
    ("mnist", "empty", "does not hold the mnist IDX files"),
    ("auto", "empty", "does not hold the fashion-mnist IDX files"),
    ("digits", "empty", "the digits data set is not read from files"),
])
def test_a_data_dir_that_cannot_be_read_is_an_error(tmp_path, capsys, command, dataset, where, message):
    (tmp_path / "empty").mkdir()
    assert main([command, "--dataset", dataset, "--data-dir", str(tmp_path / where),
                 "--out", str(tmp_path / "x")]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"mbtrain {command}: error: --data-dir: ") and message in line


# -- 9. Ctrl-C while the report is written still leaves one -------------------------

@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_ctrl_c_while_the_report_is_written_leaves_a_partial_report(tmp_path, capsys, monkeypatch, command):
    out = tmp_path / command
    out.mkdir()
    (out / "report.md").write_text("# a report of an earlier run\n")
    real = report_module.write_report
    calls = []

    def interrupted_once(folder, compare=None, **kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C after the measuring, in the middle of the report
        os.kill(os.getpid(), signal.SIGINT)  # and a second Ctrl-C: must not stop the partial report
        return real(folder, compare=compare, **kwargs)

    monkeypatch.setattr(report_module, "write_report", interrupted_once)
    argv = (SWEEP_ARGV if command == "sweep" else BENCH_ARGV) + ["--out", str(out)]
    assert main(argv) == 130
    assert calls == [{}, {"partial": True}]
    text = (out / "report.md").read_text()
    assert "> **Interrupted**" in text.split("\n")[2] and "earlier run" not in text
    assert ("## Throughput" if command == "bench" else "Fastest to target") in text
    assert json.loads((out / "machine.json").read_text())["interrupted"] is True
    assert "interrupted" in capsys.readouterr().err


# -- 10. help and messages ---------------------------------------------------------------

def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


@pytest.mark.parametrize("command", ["bench", "sweep", "report", "train", "evaluate"])
def test_help_reads_cleanly(command):
    sub = _subparsers()[command]
    text = sub.format_help()
    description = text.split("\n\n")[1]
    assert "``" not in description
    if command in ("bench", "sweep", "report"):
        assert max(len(line) for line in description.splitlines()) <= 80
    assert "(default: None)" not in text and "['" not in text and "[1," not in text
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings[0]} has no help"
            shown = sub._get_formatter()._get_help_string(action) or ""
            assert shown.count("default:") <= 1, shown


def test_sweep_help_shows_list_defaults_as_typed():
    text = _subparsers()["sweep"].format_help()
    assert "(default: 1,2,5,10,20,50,100,200,500,1000)" in " ".join(text.split())


@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_bad_batch_sizes_are_named_as_batch_sizes(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--batch-sizes", "0,10"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --batch-sizes: expected batch sizes >= 1 like 1,10,100, got '0,10'" in err
    assert "784,30,10" not in err


def test_a_multi_line_error_is_printed_on_one_line(capsys):
    assert _error("bench", FileNotFoundError("mnist: the IDX files are in none of:\n  /a\n  /b\nand so on")) == 2
    assert one_error_line(capsys) == "mbtrain bench: error: mnist: the IDX files are in none of: /a /b and so on"
