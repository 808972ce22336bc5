"""Data larger than memory: ``fit`` on ``np.load(..., mmap_mode="r")`` arrays.

The training runs in a subprocess that reports how much *anonymous* memory
(``RssAnon`` in /proc/self/status: heap and numpy buffers, not the file's pages,
which the kernel can drop and reread at will) it held at its peak during
``fit``, sampled every few milliseconds, next to tracemalloc's peak of Python
and numpy allocations. The file is 384 MiB; the data must stream through a few
mini-batches, never be copied whole (no ``np.ascontiguousarray`` copy, no
shuffled copy, no cast), also when the file is in Fortran order.
"""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")]

MiB = 2**20

TRAIN = textwrap.dedent("""
    import json, sys, threading, time, tracemalloc
    import numpy as np
    import mbtrain

    def rss_anon():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024

    X_path, y_path, sizes, dtype, backend, monitor = sys.argv[1:7]
    X = np.load(X_path, mmap_mode="r")
    y = np.load(y_path, mmap_mode="r")
    net = mbtrain.Network(json.loads(sizes), cost="cross_entropy", init="scaled", dtype=dtype, seed=0)
    # compile on a small problem first, with the real run's dtypes, batch size and monitoring (so the
    # same kernels, serial or parallel, and the gradient that monitoring runs): compilation memory is
    # not the data's
    net.fit(np.asarray(X[:512]), y[:512], epochs=1, batch_size=256, eta=0.1, backend=backend,
            monitor=monitor == "1", progress=False)
    peak, running = [rss_anon()], [True]
    baseline = peak[0]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    tracemalloc.start()
    try:
        history = net.fit(X, y, epochs=1, batch_size=256, eta=0.1, backend=backend, monitor=monitor == "1",
                          progress=False)
    finally:
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        running[0] = False
        sampler.join()
    peak[0] = max(peak[0], rss_anon())
    print(json.dumps({"baseline": baseline, "peak": peak[0], "traced": traced,
                      "finite": bool(np.isfinite(net.params).all()), "epochs": len(history)}))
""")


def make_data(directory: Path, rows: int, features: int, classes: int = 10, fortran_order=False):
    """A float32 .npy of ``rows x features`` in [0, 1], written in slices (never whole in memory)."""
    X_path, y_path = directory / "X.npy", directory / "y.npy"
    X = np.lib.format.open_memmap(X_path, mode="w+", dtype=np.float32, shape=(rows, features),
                                  fortran_order=fortran_order)
    rng = np.random.default_rng(0)
    if fortran_order:  # blocks of columns: contiguous in the file
        step = max(1, (16 * MiB) // (4 * rows))
        for start in range(0, features, step):
            X[:, start:start + step] = rng.random((rows, min(step, features - start)), dtype=np.float32)
    else:
        step = max(1, (16 * MiB) // (4 * features))
        for start in range(0, rows, step):
            X[start:start + step] = rng.random((min(step, rows - start), features), dtype=np.float32)
    X.flush()
    del X
    np.save(y_path, rng.integers(0, classes, rows).astype(np.int64))
    return X_path, y_path


def train_in_subprocess(X_path, y_path, sizes, dtype="float32", backend="numba", monitor=True):
    script = Path(X_path).parent / "train.py"
    script.write_text(TRAIN)
    done = subprocess.run([sys.executable, str(script), str(X_path), str(y_path), json.dumps(sizes), dtype,
                           backend, "1" if monitor else "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def wide_file(tmp_path_factory):
    """384 MiB: 24,576 rows of 4,096 float32 features (per-row arrays are tiny next to the rows)."""
    return make_data(tmp_path_factory.mktemp("wide"), rows=24_576, features=4096)


@pytest.mark.parametrize("backend, monitor", [("numba", True), ("numpy", False)])
def test_fit_streams_a_memory_mapped_file(wide_file, backend, monitor):
    X_path, y_path = wide_file
    file_bytes = X_path.stat().st_size
    assert file_bytes >= 384 * MiB
    used = train_in_subprocess(X_path, y_path, [4096, 16, 10], backend=backend, monitor=monitor)
    assert used["finite"] and used["epochs"] == 1
    grown = used["peak"] - used["baseline"]
    # a few mini-batches (256 x 4096 x 4 B = 4 MiB each), the model and the per-row labels, order, targets
    assert grown < 48 * MiB, f"anonymous memory grew by {grown / MiB:.0f} MiB for a {file_bytes / MiB:.0f} MiB file"
    assert used["traced"] < 48 * MiB, f"numpy allocated {used['traced'] / MiB:.0f} MiB"


def test_fit_of_a_float32_file_by_a_float64_network_does_not_copy_it(wide_file):
    X_path, y_path = wide_file
    used = train_in_subprocess(X_path, y_path, [4096, 16, 10], dtype="float64", monitor=False)
    assert used["peak"] - used["baseline"] < 48 * MiB


def test_fit_of_a_tall_narrow_file_keeps_per_row_memory_small(tmp_path):
    """4M rows of 16 features (256 MiB): per-row bookkeeping must not rival the data."""
    X_path, y_path = make_data(tmp_path, rows=4 * 2**20, features=16)
    used = train_in_subprocess(X_path, y_path, [16, 8, 10], monitor=False)
    grown = used["peak"] - used["baseline"]
    assert grown < 64 * MiB, f"anonymous memory grew by {grown / MiB:.0f} MiB for a 256 MiB file"


def test_fit_of_a_fortran_order_file_gathers_rows_instead_of_copying_it(tmp_path):
    """128 MiB in Fortran order: rows are gathered per block of mini-batches (16 MiB), never copied whole."""
    X_path, y_path = make_data(tmp_path, rows=8192, features=4096, fortran_order=True)
    assert np.load(X_path, mmap_mode="r").flags.f_contiguous
    used = train_in_subprocess(X_path, y_path, [4096, 16, 10], monitor=False)
    assert used["finite"] and used["epochs"] == 1
    grown = used["peak"] - used["baseline"]
    assert grown < 48 * MiB, f"anonymous memory grew by {grown / MiB:.0f} MiB for a 128 MiB file"
    assert used["traced"] < 48 * MiB, f"numpy allocated {used['traced'] / MiB:.0f} MiB"
