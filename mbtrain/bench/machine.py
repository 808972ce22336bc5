"""machine.json: what ran, where, with which libraries and threads, and the measured floor."""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

import numba
import numpy  # noqa: F401  (loads the BLAS so threadpoolctl can see it)
from threadpoolctl import threadpool_info, threadpool_limits


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def blas_info() -> list[dict]:
    """numpy's BLAS (and any other native thread pool) as threadpoolctl sees it."""
    keep = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture", "filepath")
    return [{k: pool.get(k) for k in keep if k in pool} for pool in threadpool_info()]


def machine_info(command=None, threads=None) -> dict:
    """A JSON-able description of the machine and software (no measurements)."""
    info = {
        "timestamp": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command if command is not None else shlex.join(sys.argv),
        "cwd": os.getcwd(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "available_cores": available_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in
                     ("mbtrain", "numpy", "numba", "llvmlite", "pandas", "scikit-learn", "torch", "threadpoolctl")},
        "blas": blas_info(),
        "numba_threading_layer_configured": numba.config.THREADING_LAYER,
        "threads": threads or {},
    }
    return info


def write_machine(path, info: dict) -> None:
    """Write ``info`` as indented JSON (atomically: a partial file never replaces a good one)."""
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_machine(folder) -> dict:
    """machine.json of a result folder, or ``{}`` when there is none."""
    path = Path(folder) / "machine.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


@contextmanager
def thread_limits(n_threads: int, arms=()):
    """Run with ``n_threads`` for BLAS (threadpoolctl), numba and each arm's own pool; restore after.

    Yields the thread counts in force, for machine.json and the report.
    """
    restore = []
    previous_numba = numba.get_num_threads()
    try:
        numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
        with threadpool_limits(limits=n_threads):
            for arm in arms:
                restore.append(arm.set_threads(n_threads))
            counts = {"requested": n_threads, "numba": numba.get_num_threads(),
                      "blas": [pool["num_threads"] for pool in blas_info()]}
            for arm in arms:
                counts.update(arm.thread_info())
            yield counts
    finally:
        for undo in reversed(restore):
            undo()
        numba.set_num_threads(previous_numba)


def _shown(settings, key):
    return repr(settings[key]) if key in settings else "not recorded"


def check_resumable(folder, run: str, settings: dict) -> dict:
    """machine.json of the run being resumed in ``folder``, checked to have ``run``'s ``settings``.

    Resuming appends to results.csv, so it is only allowed when every setting
    that shapes a measurement (the data set's name and fingerprint, sizes,
    batch sizes, etas, seeds, threads ...) is the same; how the work is spread
    (``--jobs``, ``--scheduler``) may differ. A setting the earlier run did not
    record (an older mbtrain) counts as different: it cannot be checked.

    Returns ``{}`` when the folder holds no earlier run (a fresh start).

    Raises
    ------
    ValueError
        Naming every setting that differs, or when results.csv exists without a
        machine.json to check it against.
    """
    folder = Path(folder)
    if not (folder / "results.csv").is_file():
        return {}
    previous = read_machine(folder)
    if not previous:
        raise ValueError(f"{folder}: cannot resume: results.csv has no machine.json beside it to check "
                         f"its settings; use a new --out")
    if previous.get("run") != run:
        raise ValueError(f"{folder}: cannot resume: it holds a {previous.get('run')!r} run, not {run!r}")
    old = previous.get("settings", {})
    new = json.loads(json.dumps(settings, default=str))
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        detail = "; ".join(f"{k}: was {_shown(old, k)}, now {_shown(new, k)}" for k in differ)
        raise ValueError(f"{folder}: cannot resume with different settings ({detail}); use a new --out")
    return previous
