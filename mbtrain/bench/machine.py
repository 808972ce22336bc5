"""machine.json: what ran, where, with which libraries and threads, and the measured floor.

Besides the CPU model it records what decides how fast the arithmetic can
be: the CPU's widest vector ISA (:func:`cpu_isa`), the ISA numba compiles for
(:func:`numba_target`), the kernel each BLAS library runs (threadpoolctl's
``architecture``, with the ISA that kernel uses, :func:`blas_kernel_isa`)
and the environment variables that steer BLAS and its threads
(:data:`ENVIRONMENT_PREFIXES`). :func:`narrower_blas_warnings` reads those
back (also from an older machine.json) and says when BLAS runs a kernel
narrower than the CPU supports, e.g. OpenBLAS's Haswell (AVX2) kernel on an
AVX-512 CPU because ``OPENBLAS_CORETYPE=Haswell`` is set: numpy's GEMM rate is
then lower than the machine allows, and the report says so. It also keeps
``/proc/stat``'s CPU ticks at the start, from which the end of a bench or sweep
records the share of CPU time a hypervisor took during the run
(``steal_share``, :mod:`mbtrain.bench.steal`).
"""
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

import llvmlite.binding as llvm
import numba
import numpy  # noqa: F401  (loads the BLAS so threadpoolctl can see it)
from numba.core.codegen import get_host_cpu_features
from threadpoolctl import threadpool_info, threadpool_limits

from .steal import cpu_times

#: Vector ISAs from narrowest to widest, per family; an ISA is "narrower" than another only within one family.
ISA_FAMILIES = (("SSE", "AVX", "AVX2", "AVX-512"), ("NEON", "SVE"))
#: Bytes of one vector register (SVE's length varies by CPU; LLVM vectorises fixed-length loops with NEON's).
VECTOR_BYTES = {"SSE": 16, "AVX": 32, "AVX2": 32, "AVX-512": 64, "NEON": 16, "SVE": 16}
#: Environment variables recorded in machine.json: they choose BLAS's kernel and the thread counts.
ENVIRONMENT_PREFIXES = ("OPENBLAS_", "GOTO_", "MKL_", "OMP_", "BLIS_")
#: The variable that overrides each BLAS library's choice of kernel (threadpoolctl's ``internal_api``).
KERNEL_VARIABLES = {"openblas": "OPENBLAS_CORETYPE", "blis": "BLIS_ARCH_TYPE", "mkl": "MKL_ENABLE_INSTRUCTIONS"}
#: The ISA of the kernels OpenBLAS and BLIS name in ``architecture`` (lower case; a name not here is unknown).
BLAS_KERNEL_ISA = {
    **dict.fromkeys(("skylakex", "cooperlake", "sapphirerapids", "skx", "knl", "zen4", "zen5"), "AVX-512"),
    **dict.fromkeys(("haswell", "zen", "zen2", "zen3", "excavator"), "AVX2"),
    **dict.fromkeys(("sandybridge", "bulldozer", "piledriver", "steamroller"), "AVX"),
    **dict.fromkeys(("nehalem", "core2", "penryn", "dunnington", "prescott", "atom", "barcelona", "opteron",
                     "opteron(sse3)", "nano"), "SSE"),
    **dict.fromkeys(("neoversev1", "neoversev2", "neoversen2", "a64fx", "armv8sve", "armsve"), "SVE"),
    **dict.fromkeys(("armv8", "cortexa53", "cortexa57", "cortexa72", "cortexa73", "neoversen1", "thunderx2t99",
                     "vortex", "firestorm", "falkor", "tsv110", "emag8180"), "NEON"),
}


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


def cpu_flags(path="/proc/cpuinfo") -> set:
    """The CPU's feature flags from ``path`` (x86 ``flags``, ARM ``Features``); empty when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def widest_isa(flags) -> str | None:
    """The widest vector ISA among ``flags`` (/proc/cpuinfo's, or LLVM feature names): "AVX-512" ... "NEON"."""
    flags = {str(f).lower().lstrip("+") for f in flags}
    for isa, names in (("AVX-512", {"avx512f"}), ("AVX2", {"avx2"}), ("AVX", {"avx"}), ("SSE", {"sse2", "sse"}),
                       ("SVE", {"sve"}), ("NEON", {"asimd", "neon"})):
        if flags & names:
            return isa
    return None


def _enabled(features: str) -> set:
    return {f[1:] for f in features.split(",") if f.startswith("+")}


def cpu_isa() -> tuple:
    """``(isa, source)``: the CPU's widest vector ISA from /proc/cpuinfo, else from LLVM's view of the host."""
    isa = widest_isa(cpu_flags())
    if isa is not None:
        return isa, "/proc/cpuinfo flags"
    return widest_isa(_enabled(llvm.get_host_cpu_features().flatten())), "LLVM host features"


def numba_target() -> dict:
    """The CPU name and widest vector ISA numba compiles for (``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` if set)."""
    features = numba.config.CPU_FEATURES if numba.config.CPU_FEATURES is not None else get_host_cpu_features()
    return {"cpu": numba.config.CPU_NAME or llvm.get_host_cpu_name(), "isa": widest_isa(_enabled(features))}


def environment() -> dict:
    """The variables of :data:`ENVIRONMENT_PREFIXES` set in this process (recorded, never changed)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENVIRONMENT_PREFIXES)}


def blas_kernel_isa(pool: dict, env=None) -> str | None:
    """The vector ISA of the kernel a BLAS pool runs (threadpoolctl's dict), or None when it is not known.

    OpenBLAS and BLIS name their kernel in ``architecture``; MKL does not, and
    is capped only by ``MKL_ENABLE_INSTRUCTIONS`` (``env``, default this
    process's environment).
    """
    env = os.environ if env is None else env
    if pool.get("internal_api") == "mkl":
        cap = str(env.get("MKL_ENABLE_INSTRUCTIONS", "")).upper()
        return next((isa for prefix, isa in (("AVX512", "AVX-512"), ("AVX2", "AVX2"), ("AVX", "AVX"),
                                             ("SSE", "SSE")) if cap.startswith(prefix)), None)
    return BLAS_KERNEL_ISA.get(str(pool.get("architecture") or "").lower())


def isa_narrower(isa: str | None, than: str | None) -> bool:
    """``isa`` is a narrower vector ISA of the same family as ``than`` (False when either is unknown)."""
    for family in ISA_FAMILIES:
        if isa in family and than in family:
            return family.index(isa) < family.index(than)
    return False


def narrower_blas_warnings(machine: dict) -> list[str]:
    """A sentence for each BLAS library of ``machine`` (machine.json) running a kernel narrower than its CPU's ISA.

    Each names the variable that chose the kernel when it is set
    (``OPENBLAS_CORETYPE=Haswell``), else the variable that would override it.
    """
    cpu, env = machine.get("isa"), machine.get("environment") or {}
    sentences = []
    for pool in machine.get("blas", []):
        kernel = pool.get("kernel_isa") or blas_kernel_isa(pool, env)
        if not isa_narrower(kernel, cpu):
            continue
        api = pool.get("internal_api", "BLAS")
        variable = KERNEL_VARIABLES.get(api)
        if variable in env:
            why = f"`{variable}={env[variable]}` is set in the environment"
        else:
            why = (f"`{variable}` is not set: this {api} build may not know this CPU" if variable
                   else "no variable set here explains it")
        library = " ".join(str(part) for part in (api, pool.get("version")) if part)
        what = f"its {pool['architecture']} kernel" if pool.get("architecture") else "a kernel"
        sentences.append(f"{library} runs {what} ({kernel}) on a CPU with {cpu}: {why}. numpy's GEMM rate is below "
                         "what this CPU allows, so a floor from it alone would flatter every ratio.")
    return sentences


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
    """numpy's BLAS (and any other native thread pool) as threadpoolctl sees it; BLAS pools with ``kernel_isa``."""
    keep = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture", "filepath")
    pools = [{k: pool.get(k) for k in keep if k in pool} for pool in threadpool_info()]
    for pool in pools:
        if pool.get("user_api") == "blas":
            pool["kernel_isa"] = blas_kernel_isa(pool)
    return pools


def machine_info(command=None, threads=None) -> dict:
    """A JSON-able description of the machine and software (no measurements)."""
    isa, isa_source = cpu_isa()
    info = {
        "timestamp": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command if command is not None else shlex.join(sys.argv),
        "cwd": os.getcwd(),
        "cpu_model": cpu_model(),
        "isa": isa,
        "isa_source": isa_source,
        "numba_target": numba_target(),
        "logical_cpus": os.cpu_count(),
        "available_cores": available_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in
                     ("mbtrain", "numpy", "numba", "llvmlite", "pandas", "scikit-learn", "torch", "threadpoolctl")},
        "blas": blas_info(),
        "environment": environment(),
        "numba_threading_layer_configured": numba.config.THREADING_LAYER,
        "threads": threads or {},
        # /proc/stat's CPU ticks when the run began: the run's end records the hypervisor's steal since
        "cpu_times_at_start": cpu_times(),
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
