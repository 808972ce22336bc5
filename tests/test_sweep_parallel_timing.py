"""Parallel and Dask sweeps time training only, never the JIT compiler, and say how many workers ran.

A worker process fresh from its start has none of the kernels in memory:
before each run warmed its own, batch sizes 1 and 2 of ``sweep --quick``
took 160-220x their serial seconds to target under ``--jobs 2`` and on a
Dask cluster (each worker's first run of each kernel loaded it inside the
timed region). Here the quick sweep runs serially, then with fresh workers
(loky's reusable workers shut down first; a new ``LocalCluster``), and the
per-batch-size seconds to target are compared within one test session: the
sum over batch sizes of each one's least over the seeds. Another process on
a loaded machine only ever adds time to a run, so the least is the figure it
disturbs least; compiling adds to every run that is a fresh worker's first at
its kernel, and the two seeds of batch size 1 are the first task of each worker.
"""
import json

import numpy as np
import pandas as pd
import pytest

from mbtrain.bench.data import BenchData
from mbtrain.bench.sweep import sweep
from mbtrain.bench.trial import _segment_batch_sizes, _segments
from mbtrain.cli import main
from mbtrain.synthetic import make_blobs

joblib = pytest.importorskip("joblib")
distributed = pytest.importorskip("dask.distributed")

FACTOR = 3  # the "within 3x of the serial run"


def quick_sweep(out, *extra):
    """``mbtrain sweep --quick`` (digits, batch sizes 1..1000, 2 seeds) into ``out``; its results.csv."""
    assert main(["sweep", "--quick", "--no-progress", "--out", str(out), *extra]) == 0
    return pd.read_csv(out / "results.csv")


def seconds_by_batch_size(results, batch_sizes):
    """The least seconds to target over the seeds, per batch size in ``batch_sizes``."""
    runs = results[results["kind"] == "sweep"]
    return runs[runs["batch_size"].isin(batch_sizes)].groupby("batch_size")["seconds_to_target"].min()


def always_reached(results):
    runs = results[results["kind"] == "sweep"]
    reached = runs.groupby("batch_size")["seconds_to_target"].apply(lambda s: s.notna().all())
    return list(reached[reached].index)


def measured_line(folder):
    return next(line for line in (folder / "report.md").read_text().splitlines() if line.startswith("- measured:"))


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return quick_sweep(tmp_path_factory.mktemp("serial"))


@pytest.fixture
def fresh_loky_workers():
    """No loky worker left from an earlier test: the next ``--jobs`` sweep starts new processes."""
    joblib.externals.loky.get_reusable_executor().shutdown(wait=True, kill_workers=True)


@pytest.fixture
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        yield cluster


def assert_like_serial(serial, parallel):
    # what was reached must not depend on where it ran; only then are the seconds comparable
    batch_sizes = always_reached(serial)
    assert len(batch_sizes) >= 3 and 1 in batch_sizes and always_reached(parallel) == batch_sizes
    here, there = seconds_by_batch_size(serial, batch_sizes), seconds_by_batch_size(parallel, batch_sizes)
    ratio = there.sum() / here.sum()
    table = pd.DataFrame({"serial s": here, "parallel s": there}).to_string()
    assert ratio < FACTOR, f"parallel seconds to target {ratio:.1f}x the serial ones:\n{table}"
    # each run warmed its own kernels and recorded how long that took, apart from its seconds
    compiled = parallel.loc[parallel["kind"] == "sweep", "compile_seconds"]
    assert compiled.notna().all() and (compiled >= 0).all()


@pytest.mark.slow
def test_jobs_2_with_fresh_workers_times_like_serial(tmp_path, serial, fresh_loky_workers):
    out = tmp_path / "jobs"
    parallel = quick_sweep(out, "--jobs", "2")
    assert set(parallel["executor"].dropna()) == {"joblib-loky"}
    assert_like_serial(serial, parallel)
    assert measured_line(out).startswith("- measured: in parallel (joblib-loky, 2 workers, at most 2 runs at once)")
    assert "compilation excluded" in (out / "report.md").read_text()


@pytest.mark.slow
def test_dask_cluster_with_fresh_workers_times_like_serial(tmp_path, serial, cluster):
    out = tmp_path / "dask"
    parallel = quick_sweep(out, "--scheduler", cluster.scheduler_address)
    assert set(parallel["executor"].dropna()) == {"dask"}
    assert_like_serial(serial, parallel)
    assert measured_line(out).startswith("- measured: in parallel (dask, 2 workers, at most 2 runs at once)")
    execution = json.loads((out / "machine.json").read_text())["execution"]
    assert (execution["workers"], execution["threads"], execution["runs_at_once"]) == (2, 2, 2)


def blobs():
    X, y = make_blobs(n_samples=500, n_features=16, n_classes=4, dtype="float64", seed=0)
    return BenchData("synthetic", X[:400], y[:400], X[400:], y[400:], "blobs")


def test_dask_jobs_caps_the_runs_at_once_and_the_report_counts_workers_and_threads(tmp_path):
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        result = sweep(blobs(), [16, 8, 4], out=tmp_path, batch_sizes=[10, 50], seeds=2, max_epochs=1, target=0.5,
                       progress=False, scheduler=cluster.scheduler_address, jobs=1)
    runs = result.results[result.results["kind"] == "sweep"]
    assert len(runs) == 4 and set(runs["jobs"]) == {1}
    execution = json.loads((tmp_path / "machine.json").read_text())["execution"]
    assert (execution["workers"], execution["threads"], execution["runs_at_once"]) == (1, 2, 1)
    assert execution["requested_jobs"] == 1
    assert measured_line(tmp_path).startswith("- measured: in parallel (dask, 1 worker, at most 1 run at once)")


def test_every_sweep_row_records_its_compile_seconds_apart(tmp_path):
    result = sweep(blobs(), [16, 8, 4], out=tmp_path, batch_sizes=[1, 7], seeds=1, max_epochs=1, target=0.99,
                   progress=False, write_report=False)
    runs = result.results[result.results["kind"] == "sweep"]
    assert np.isfinite(runs["compile_seconds"]).all() and (runs["compile_seconds"] >= 0).all()


@pytest.mark.parametrize("n, batch_size, calls", [(1001, 1000, [1, 1000]), (400, 7, [7]), (400, 1, [1]),
                                                   (30, 8, [6, 8])])
def test_the_warm_up_covers_every_batch_size_an_epoch_segment_runs(n, batch_size, calls):
    # a segment shorter than a batch runs the kernel at its own size (1 row: the online kernel)
    steps, cuts = _segments(n, batch_size, 4)
    assert _segment_batch_sizes(n, batch_size, cuts) == calls
