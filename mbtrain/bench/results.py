"""results.csv: one tidy table, one row per measurement, appended and flushed as measured.

Every row has a ``kind``:

``floor``   the measured GEMM and FMA-probe rates and bandwidth for one dtype, with the epoch floor they imply;
``check``   an arm's update on one mini-batch compared with the ``loop`` reference;
``bench``   one timed epoch of one arm at one batch size and dtype (``repeat`` numbers them);
``curve``   one evaluation point of a sweep run (learning curve);
``sweep``   one sweep run (batch size, eta, seed) to the target accuracy;
``noise``   a gradient-noise-scale estimate at one point of training.

All kinds share the columns of :data:`COLUMNS`; a row leaves empty what does
not apply to it (e.g. ``epochs_to_target`` when the target was not reached).
Because the header is fixed up front, a run interrupted half-way leaves a
valid CSV with every row measured so far, at most with a last line cut short
by a kill in the middle of a write. ``ResultsWriter(path, resume=True)`` reads
such a file back, drops a cut-short last line, keeps the complete rows
(``writer.rows``) and appends after them; the bench and sweep use it to skip
what was already measured.

``optimizer`` is the label of the optimizer a row trained with
(``"adam(beta1=0.9, beta2=0.999, eps=1e-08)"``, see :func:`mbtrain.optim.label`);
folders written before it existed trained plain SGD, and :func:`read_results`
says so (``"sgd()"``) on their check, bench, curve, sweep and noise rows.

``executor`` and ``jobs`` say how a row was measured: ``serial`` (one process,
1 job) or ``joblib-loky``/``dask`` with ``jobs`` trials at once, as joblib or
the cluster counted them (their seconds are wall time shared with the other
trials: compare them only with each other). A ``sweep`` row's
``compile_seconds`` is what its run spent compiling, or loading from numba's
cache, the kernels it needed, in its own process before its clock started:
never part of its ``seconds``.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: runs into one folder are not guarded
    fcntl = None

import pandas as pd

from .._atomic import atomic_write
from ..optim import SGD, label

COLUMNS = [
    "kind", "dataset", "sizes", "cost", "dtype", "arm", "arm_kind", "loss", "status", "note",
    "batch_size", "eta", "eta_policy", "optimizer", "lmbda", "seed", "repeat", "threads",
    # bench
    "rows", "rows_timed", "epoch_seconds", "examples_per_second", "compile_seconds", "warmup_seconds",
    "check_error", "check_tolerance",
    # floor
    "floor_seconds", "floor_bound", "compute_floor_seconds", "memory_floor_seconds",
    "epoch_flops", "epoch_bytes", "gemm_flops_per_second", "probe_flops_per_second", "compute_rate_source",
    "bandwidth_bytes_per_second", "bandwidth_source",
    # curve
    "epoch", "steps", "seconds", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
    # sweep
    "target", "max_epochs", "reached", "epochs_to_target", "steps_to_target", "seconds_to_target",
    "examples_to_target", "best_val_accuracy", "final_train_loss", "final_val_loss",
    # noise
    "noise_scale", "trace_sigma", "grad_norm_sq", "noise_rows",
    # how the row was measured
    "executor", "jobs",
]


LOCK_NAME = ".mbtrain.lock"
TRAINED_KINDS = ("check", "bench", "curve", "sweep", "noise")  #: the kinds of row that train with an optimizer
SGD_LABEL = label(SGD().describe())  #: what a row without an optimizer trained with (results.csv before it had one)


class FolderInUseError(BlockingIOError):
    """Another run holds the lock of the result folder."""


@contextlib.contextmanager
def folder_lock(folder):
    """Hold an exclusive lock on result folder ``folder`` (``LOCK_NAME`` inside it) while the body runs.

    Two runs writing one results.csv would lose or splice each other's rows,
    so a second run is refused at once (the lock is not waited for). The
    lock is an ``fcntl.flock`` on the file, released by the system when the
    holder exits however it ends (even by ``kill -9``); the file stays and
    records the holder's pid, which the refusal names.

    Raises
    ------
    FolderInUseError
        Naming the folder and, when recorded, the pid of the run that holds it.
    """
    folder = Path(folder)
    if fcntl is None:
        yield
        return
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
            by = f"another mbtrain run (pid {holder})" if holder.isdigit() else "another mbtrain run"
            raise FolderInUseError(f"{folder}: in use by {by}; wait for it to finish or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value)
    return value


def _complete_rows(path: Path) -> list[dict]:
    """The complete rows of an existing results.csv, as dicts of strings.

    A kill in the middle of a write leaves a last record without its line end
    (or, inside a quoted field, with too few fields); it is dropped. A header
    other than :data:`COLUMNS` is an error (a file of another mbtrain version,
    or not a results.csv at all).
    """
    text = path.read_bytes().decode("utf-8", errors="replace")  # no newline translation: "\r" alone is a cut line
    records = list(csv.reader(io.StringIO(text, newline="")))
    if not records:
        return []
    if records[0] != COLUMNS:
        head = records[0]
        if (not text.endswith("\n") and len(records) == 1 and len(head) <= len(COLUMNS)
                and head[:-1] == COLUMNS[:len(head) - 1] and COLUMNS[len(head) - 1].startswith(head[-1])):
            return []  # killed while writing the header
        raise ValueError(
            f"{path}: cannot resume: its columns are not those of this mbtrain's results.csv "
            f"(written by another version?); use a new --out")
    body = records[1:]
    if body and not text.endswith("\n"):
        body = body[:-1]
    return [dict(zip(COLUMNS, record)) for record in body if len(record) == len(COLUMNS)]


class ResultsWriter:
    """Append rows to ``path`` (a CSV with the :data:`COLUMNS` header), flushing each one.

    Parameters
    ----------
    path : str or Path
        Without ``resume`` it is overwritten when it exists: a run owns its
        output folder.
    on_row : callable or None
        Called with each row (a dict) after it is on disk; the harness counts
        measurements with it and tests raise ``KeyboardInterrupt`` from it.
    resume : bool
        Keep the complete rows of an existing ``path`` (in :attr:`rows`, as
        dicts of strings) and append after them; a cut-short last line is
        dropped.
    keep : callable or None
        With ``resume``: ``keep(rows) -> rows`` chooses which existing rows stay
        (the sweep drops the curve points of a run that did not finish, since it
        runs again). The file is rewritten atomically when rows are dropped.
    """

    def __init__(self, path, on_row=None, resume=False, keep=None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = []
        if resume and self.path.is_file():
            found = _complete_rows(self.path)
            self.rows = list(keep(found)) if keep is not None else found
            with atomic_write(self.path, "w") as f:  # rewritten whole: a cut-short line must not stay
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(self.rows)
            self._file = open(self.path, "a", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS, extrasaction="raise")
        else:
            self._file = open(self.path, "w", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS, extrasaction="raise")
            self._writer.writeheader()
            self._file.flush()
        self.on_row = on_row
        self.count = 0

    def write(self, **row) -> dict:
        """Write one row (unknown keys are an error, missing ones are left empty)."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"row: unknown columns {sorted(unknown)}; add them to results.COLUMNS")
        self._writer.writerow({k: _cell(v) for k, v in row.items()})
        self._file.flush()
        self.count += 1
        if self.on_row is not None:
            self.on_row(row)
        return row

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_results(path) -> pd.DataFrame:
    """Read a results.csv (or the folder holding one) into a DataFrame with every column of :data:`COLUMNS`."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"results: no results.csv at {path}")
    frame = pd.read_csv(path, dtype={"sizes": str, "note": str, "status": str, "optimizer": str},
                        keep_default_na=True)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = pd.NA
    return with_optimizer(frame)


def with_optimizer(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with :data:`SGD_LABEL` where a row that trained has no ``optimizer`` (an older results.csv)."""
    frame = frame.copy()
    if "optimizer" not in frame:
        frame["optimizer"] = pd.NA
    frame["optimizer"] = frame["optimizer"].astype(object)
    missing = frame["optimizer"].isna() & frame["kind"].isin(TRAINED_KINDS)
    frame.loc[missing, "optimizer"] = SGD_LABEL
    return frame
