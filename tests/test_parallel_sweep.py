"""Sweeps and benchmarks that are killed and resumed, and sweeps run in parallel (joblib, Dask).

Resuming must neither redo a finished measurement nor record one twice, and
must survive a last CSV line cut short by a kill. Parallel runs must record
exactly the rows a serial run records (timings aside), once each, also when a
Dask worker dies in the middle.
"""
import csv
import importlib
import io
import json
import os
import signal
import time

import pandas as pd
import pytest

from mbtrain.bench.data import BenchData
from mbtrain.bench.results import COLUMNS, ResultsWriter
from mbtrain.bench.sweep import sweep
from mbtrain.bench.throughput import bench
from mbtrain.cli import main
from mbtrain.synthetic import make_blobs

SIZES = [64, 8, 10]
RUN_KEY = ["batch_size", "eta", "seed"]
CURVE_KEY = RUN_KEY + ["steps"]
TIMING = ["seconds", "seconds_to_target", "epoch_seconds", "examples_per_second", "compile_seconds",
          "warmup_seconds", "executor", "jobs"]


def blobs(rows=400):
    X, y = make_blobs(n_samples=rows + 200, n_features=64, n_classes=10, spread=1.2, dtype="float64", seed=0)
    return BenchData("synthetic", X[:rows], y[:rows], X[rows:], y[rows:], "blobs")


SWEEP_OPTIONS = dict(batch_sizes=[5, 20, 100], seeds=2, max_epochs=2, target=0.6, progress=False,
                     write_report=False)


def run_sweep(out, **kwargs):
    return sweep(blobs(), SIZES, out=out, **dict(SWEEP_OPTIONS, **kwargs))


def measured(results, kinds=("sweep", "curve", "noise")):
    """The rows of ``kinds``, sorted, without timing columns: what must not depend on how it ran."""
    frame = results[results["kind"].isin(kinds)].drop(columns=TIMING)
    return frame.sort_values(["kind"] + CURVE_KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory):
    return run_sweep(tmp_path_factory.mktemp("serial")).results


def assert_each_once(results):
    runs = results[results["kind"] == "sweep"]
    assert not runs.duplicated(RUN_KEY).any(), "a run was recorded twice"
    curves = results[results["kind"] == "curve"]
    assert not curves.duplicated(CURVE_KEY).any(), "an evaluation was recorded twice"


# -- results.csv read back -------------------------------------------------------

def test_a_last_line_cut_anywhere_is_dropped_on_resume(tmp_path):
    path = tmp_path / "results.csv"
    with ResultsWriter(path) as writer:
        for i in range(3):
            writer.write(kind="bench", arm="numba", batch_size=i, repeat=0, note="has, a comma\nand a line end")
    full = path.read_bytes()
    last_row_start = full.rstrip(b"\r\n").rfind(b"\r\nbench") + 2
    for cut in range(last_row_start, len(full) + 1):
        path.write_bytes(full[:cut])
        with ResultsWriter(path, resume=True) as writer:
            kept = writer.rows
            writer.write(kind="bench", arm="numba", batch_size=9, repeat=0)
        expected = 3 if cut == len(full) else 2
        assert [int(r["batch_size"]) for r in kept] == list(range(expected))
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        assert [int(r["batch_size"]) for r in rows] == list(range(expected)) + [9]
        assert rows[0]["note"] == "has, a comma\nand a line end"


def test_a_file_cut_in_its_header_starts_afresh(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(",".join(COLUMNS)[:17])
    with ResultsWriter(path, resume=True) as writer:
        assert writer.rows == []
        writer.write(kind="floor", dtype="float32")
    assert len(pd.read_csv(path)) == 1


def test_resuming_a_foreign_csv_is_refused(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="cannot resume: its columns"):
        ResultsWriter(path, resume=True)


# -- sweeps: interrupted, killed, resumed ------------------------------------------

def interrupt_after(kind, count):
    seen = []

    def on_row(row):
        if row["kind"] == kind:
            seen.append(row)
            if len(seen) == count:
                raise KeyboardInterrupt

    return on_row


@pytest.mark.parametrize("kind, count", [("sweep", 2), ("curve", 9)], ids=["between-runs", "inside-a-run"])
def test_interrupted_sweep_resumes_without_redoing_or_duplicating(tmp_path, serial_sweep, kind, count):
    first = run_sweep(tmp_path, on_row=interrupt_after(kind, count))
    assert first.interrupted
    finished = first.results[first.results["kind"] == "sweep"]
    recorded = []
    second = run_sweep(tmp_path, resume=True, on_row=recorded.append)
    assert not second.interrupted
    rerun = {tuple(r[k] for k in RUN_KEY) for r in recorded if r["kind"] == "sweep"}
    assert not rerun & {tuple(r) for r in finished[RUN_KEY].itertuples(index=False)}, "a finished run ran again"
    assert_each_once(second.results)
    # the union is exactly what one uninterrupted run records
    pd.testing.assert_frame_equal(measured(second.results), measured(serial_sweep), check_dtype=False)
    machine = json.loads((tmp_path / "machine.json").read_text())
    assert machine["interrupted"] is False and machine["resumed_from"][0]["interrupted"] is True


def test_sweep_killed_mid_write_resumes(tmp_path, serial_sweep):
    """SIGKILL cannot be caught: the file ends where the kill fell, here in the middle of a row."""
    run_sweep(tmp_path, on_row=interrupt_after("sweep", 3))
    path = tmp_path / "results.csv"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 25])  # the last row (a sweep summary) cut short
    second = run_sweep(tmp_path, resume=True)
    assert_each_once(second.results)
    pd.testing.assert_frame_equal(measured(second.results), measured(serial_sweep), check_dtype=False)


def test_resume_with_other_settings_is_refused(tmp_path):
    run_sweep(tmp_path, on_row=interrupt_after("sweep", 1))
    with pytest.raises(ValueError, match=r"cannot resume with different settings \(max_epochs: was 2, now 3"):
        run_sweep(tmp_path, resume=True, max_epochs=3)


def test_resume_of_a_finished_sweep_runs_nothing(tmp_path):
    run_sweep(tmp_path)
    recorded = []
    again = run_sweep(tmp_path, resume=True, on_row=recorded.append)
    assert recorded == [] and not again.interrupted


def test_cli_resume_and_jobs_options(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["sweep", "--dataset", "synthetic", "--sizes", "64,8,10", "--batch-sizes", "10,100", "--seeds", "1",
            "--max-epochs", "1", "--target", "0.5", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    before = pd.read_csv(out / "results.csv")
    assert main(argv + ["--resume"]) == 0
    after = pd.read_csv(out / "results.csv")
    assert len(after) == len(before)
    assert "serially, one measurement at a time" in (out / "report.md").read_text()
    with pytest.raises(SystemExit):
        main(argv + ["--jobs", "0"])
    assert "--jobs" in capsys.readouterr().err
    assert main(argv + ["--resume", "--max-epochs", "2"]) == 2
    assert "cannot resume with different settings" in capsys.readouterr().err


# -- bench: interrupted, resumed ----------------------------------------------------

def run_bench(out, **kwargs):
    X, y = make_blobs(n_samples=300, n_features=16, n_classes=4, dtype="float64", seed=0)
    options = dict(batch_sizes=[10, 100], arms=["numpy", "numba"], dtypes=["float32", "float64"], repeats=2,
                   progress=False, write_report=False, max_epoch_seconds=1.0)
    options.update(kwargs)
    return bench(X, y, [16, 8, 4], out=out, **options)


def test_interrupted_bench_resumes_without_retiming(tmp_path):
    first = run_bench(tmp_path, on_row=interrupt_after("bench", 5))
    assert first.interrupted
    timed_first = first.results[first.results["kind"] == "bench"]
    recorded = []
    second = run_bench(tmp_path, resume=True, on_row=recorded.append)
    results = second.results
    # interrupted in (float32, numba) after its check: floors and both float32 checks are reused
    assert len(timed_first) == 5
    assert [(r["kind"], r["dtype"]) for r in recorded if r["kind"] != "bench"] == [("check", "float64")] * 2
    assert len(recorded) == 2 * 2 * 2 * 2 - len(timed_first) + 2
    for kind, key in [("floor", ["dtype"]), ("check", ["arm", "dtype"]),
                      ("bench", ["arm", "dtype", "batch_size", "repeat"])]:
        rows = results[results["kind"] == kind]
        assert not rows.duplicated(key).any(), f"{kind} recorded twice"
    assert len(results[results["kind"] == "bench"]) == 2 * 2 * 2 * 2  # arms x dtypes x batch sizes x repeats
    assert (results["executor"].dropna() == "serial").all()


# -- parallel: joblib and Dask ------------------------------------------------------

joblib = pytest.importorskip("joblib")


@pytest.mark.slow
def test_joblib_jobs_record_what_a_serial_sweep_records(tmp_path, serial_sweep):
    result = run_sweep(tmp_path, jobs=2)
    assert_each_once(result.results)
    pd.testing.assert_frame_equal(measured(result.results), measured(serial_sweep), check_dtype=False)
    assert set(result.results["executor"]) == {"joblib-loky"} and set(result.results["jobs"]) == {2}


@pytest.fixture
def dask_cluster():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            yield cluster, client


@pytest.mark.slow
def test_dask_sweep_survives_a_killed_worker(tmp_path, serial_sweep, dask_cluster):
    cluster, client = dask_cluster
    pids = client.run(os.getpid)
    killed = []

    def kill_a_worker(row):
        # after the first run is recorded, the other worker is busy with another: kill it
        if row["kind"] == "sweep" and not killed:
            pid = next(iter(pids.values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    result = run_sweep(tmp_path, scheduler=cluster.scheduler_address, jobs=-1, on_row=kill_a_worker)
    assert killed and not result.interrupted
    assert_each_once(result.results)
    pd.testing.assert_frame_equal(measured(result.results), measured(serial_sweep), check_dtype=False)
    assert set(result.results["executor"]) == {"dask"}
    report = __import__("mbtrain.bench.report", fromlist=["render_report"]).render_report(tmp_path)
    assert "in parallel (dask" in report


@pytest.mark.slow
def test_dask_sweep_survives_losing_every_worker_that_held_the_data(tmp_path, serial_sweep, dask_cluster):
    cluster, client = dask_cluster
    pids = list(client.run(os.getpid).values())

    def kill_the_workers(row):
        if row["kind"] == "sweep" and pids:  # one after the first run, the other after the next
            os.kill(pids.pop(), signal.SIGKILL)

    result = run_sweep(tmp_path, scheduler=cluster.scheduler_address, on_row=kill_the_workers)
    assert not pids and not result.interrupted
    assert_each_once(result.results)
    pd.testing.assert_frame_equal(measured(result.results), measured(serial_sweep), check_dtype=False)


def test_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("dask.distributed")
    monkeypatch.setattr(importlib.import_module("mbtrain.bench.sweep"), "SCHEDULER_TIMEOUT", 1)
    with pytest.raises(ValueError, match="scheduler: cannot reach"):
        run_sweep(tmp_path, scheduler="tcp://127.0.0.1:9", jobs=-1)


def test_a_run_dask_gives_up_on_is_a_clear_error_and_keeps_what_finished(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    dask = pytest.importorskip("dask")
    # no second chance: the run on the killed worker is given up at once
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)  # {worker address: pid}
        killed = []

        def kill_a_worker(row):
            # kill a worker the scheduler has a run on: the worker that just sent this row may be between runs
            # (killing it then loses nothing, and the sweep rightly finishes)
            deadline = time.monotonic() + 10
            while row["kind"] == "sweep" and not killed and time.monotonic() < deadline:
                busy = [address for address, keys in client.processing().items() if keys and address in pids]
                if busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                else:
                    time.sleep(0.01)

        lost = r"scheduler: Dask gave up on the run at batch size \d+, eta .*: continue with --resume"
        with pytest.raises(ValueError, match=lost):
            run_sweep(tmp_path, scheduler=cluster.scheduler_address, on_row=kill_a_worker)
    finished = pd.read_csv(tmp_path / "results.csv")
    assert (finished["kind"] == "sweep").sum() >= 1
    assert_each_once(finished)
