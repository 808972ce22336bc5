"""Whether two result folders can be compared, what differs between them, and their ratios (DataFrames).

A ratio is only an answer when both runs measured the same problem: the same
kind of run (bench or sweep), data set and training rows, layer sizes and
cost, and for a sweep the same dtype and target. :func:`check_comparable`
refuses anything else with :class:`IncomparableRuns`, naming every setting
that differs. Other settings (eta, repeats, threads, ...) and the machines
(CPU, cores, vector ISA, BLAS kernel, GEMM and peak rates, versions) may differ on purpose, e.g. to
compare two machines or two versions; they are listed, and each ratio row
says what differs for it.
"""
from __future__ import annotations

import pandas as pd

from .machine import blas_kernel_isa
from .steal import STEAL_WARNING
from .summaries import bench_summary, best_per_batch_size, sweep_summary

GEMM_TOLERANCE = 0.10  # GEMM (and FMA probe) rates within 10% are one machine's noise, not two machines


class IncomparableRuns(ValueError):
    """Two result folders that do not measure the same thing (another kind of run, data set, sizes ...).

    A ``ValueError``, so a caller that reports bad input (the CLI: one line,
    exit code 2) reports this too.
    """


def run_kind(results: pd.DataFrame, machine: dict) -> str:
    """``"bench"`` or ``"sweep"`` (machine.json's ``run``, else the kinds of row results.csv holds)."""
    if machine.get("run"):
        return machine["run"]
    kinds = set(results["kind"].dropna())
    if kinds & {"sweep", "curve", "noise"}:
        return "sweep"
    if kinds & {"bench", "floor", "check"}:
        return "bench"
    return "empty"


def _values(column) -> str:
    values = []
    for v in column.dropna().unique():
        number = pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0]
        if pd.isna(number) or isinstance(v, str):
            values.append(str(v))
        else:
            values.append(str(int(number)) if float(number).is_integer() else f"{float(number):g}")
    return ", ".join(sorted(set(values))) or "?"


def problem(results: pd.DataFrame, machine: dict) -> dict:
    """What a run measured, from results.csv: the settings two runs must share to be compared."""
    measured = results[results["kind"].isin(["bench", "check", "floor", "sweep", "curve"])]
    kind = run_kind(results, machine)
    found = {"run": kind, "dataset": _values(measured["dataset"]), "training rows": _values(measured["rows"]),
             "sizes": _values(measured["sizes"]), "cost": _values(measured["cost"])}
    if kind == "sweep":
        found.update(dtype=_values(measured["dtype"]), target=_values(measured["target"]))
    return found


def setting_differences(machine: dict, other_machine: dict) -> pd.DataFrame:
    """The settings of machine.json that differ between two runs: ``setting``, ``this run``, ``other run``."""
    mine, theirs = machine.get("settings", {}), other_machine.get("settings", {})
    rows = [{"setting": key, "this run": mine.get(key), "other run": theirs.get(key)}
            for key in list(dict.fromkeys(list(mine) + list(theirs))) if mine.get(key) != theirs.get(key)]
    return pd.DataFrame(rows, columns=["setting", "this run", "other run"])


def _blas(machine):
    """Each BLAS library's name, version, kernel and the kernel's ISA (from the kernel's name for an older folder)."""
    pools = [p for p in machine.get("blas", []) if p.get("internal_api") in ("openblas", "mkl", "blis", "accelerate")
             or p.get("user_api") == "blas"]
    env = machine.get("environment") or {}
    described = set()
    for p in pools:
        isa = p.get("kernel_isa") or blas_kernel_isa(p, env)
        text = " ".join(str(p[k]) for k in ("internal_api", "version", "architecture") if p.get(k)) or "?"
        described.add(text + (f" ({isa})" if isa else ""))
    return "; ".join(sorted(described)) or None


def _rate(machine, results, dtype, key="gemm_flops_per_second"):
    """A measured rate of the floor (``key``): machine.json's, else the floor row's in results.csv."""
    rate = (machine.get("floor") or {}).get(key, {}).get(dtype)
    if rate is None and key in results:
        rows = results[(results["kind"] == "floor") & (results["dtype"] == dtype)]
        rates = pd.to_numeric(rows[key], errors="coerce").dropna()
        rate = float(rates.iloc[0]) if not rates.empty else None
    return rate


def _environment(machine):
    """The BLAS and thread variables machine.json recorded ("none set"), or None for a folder from before them."""
    if "environment" not in machine:
        return None
    return ", ".join(f"{k}={v}" for k, v in sorted(machine["environment"].items())) or "none set"


def machine_differences(machine: dict, other_machine: dict, results=None, other=None) -> pd.DataFrame:
    """What differs between the two machines: CPU, cores, ISA, numba's target, BLAS kernel and the variables
    that steer it, GEMM and FMA-probe rates, the hypervisor's steal during the run, threads, versions.

    Columns ``what``, ``this run``, ``other run``, ``differs``. Measured rates
    (machine.json's floor, else the floor rows) count as different beyond
    :data:`GEMM_TOLERANCE`, steal beyond :data:`mbtrain.bench.steal.STEAL_WARNING`
    (5 points). A field neither machine.json records is left out.
    """
    empty = pd.DataFrame(columns=["kind", "dtype", "gemm_flops_per_second"])
    results = empty if results is None else results
    other = empty if other is None else other
    rows = []

    def add(what, a, b, differs=None):
        if a is None and b is None:
            return
        rows.append({"what": what, "this run": a, "other run": b, "differs": a != b if differs is None else differs})

    add("CPU", machine.get("cpu_model"), other_machine.get("cpu_model"))
    add("cores available", machine.get("available_cores"), other_machine.get("available_cores"))
    add("ISA", machine.get("isa"), other_machine.get("isa"))
    add("numba target", (machine.get("numba_target") or {}).get("cpu"),
        (other_machine.get("numba_target") or {}).get("cpu"))
    add("BLAS kernel", _blas(machine), _blas(other_machine))
    add("BLAS environment", _environment(machine), _environment(other_machine))
    for key, what in (("gemm_flops_per_second", "GEMM"), ("probe_flops_per_second", "FMA probe")):
        for dtype in ("float32", "float64"):
            a, b = _rate(machine, results, dtype, key), _rate(other_machine, other, dtype, key)
            if a is not None or b is not None:
                differs = a is not None and b is not None and abs(a / b - 1) > GEMM_TOLERANCE  # unknown: not "differs"
                add(f"{what} GFLOP/s {dtype}", None if a is None else round(a / 1e9, 1),
                    None if b is None else round(b / 1e9, 1), differs)
    steal, other_steal = machine.get("steal_share"), other_machine.get("steal_share")
    add("hypervisor steal", None if steal is None else f"{steal:.1%}",
        None if other_steal is None else f"{other_steal:.1%}",
        steal is not None and other_steal is not None and abs(steal - other_steal) > STEAL_WARNING)
    add("threads requested", (machine.get("threads") or {}).get("requested"),
        (other_machine.get("threads") or {}).get("requested"))
    for name in ("mbtrain", "numpy", "numba", "llvmlite", "torch", "scikit-learn"):
        add(name, (machine.get("versions") or {}).get(name), (other_machine.get("versions") or {}).get(name))
    return pd.DataFrame(rows, columns=["what", "this run", "other run", "differs"])


def check_comparable(results, machine, other, other_machine, name="the other folder") -> None:
    """Raise :class:`IncomparableRuns` unless both runs measured the same problem (see the module's text)."""
    mine, theirs = problem(results, machine), problem(other, other_machine)
    if mine["run"] != theirs["run"]:
        raise IncomparableRuns(
            f"--compare: {name} holds a {theirs['run']} run and this folder a {mine['run']} run; "
            "compare a bench with a bench, a sweep with a sweep")
    differ = [f"{key} {mine[key]} here, {theirs[key]} in {name}" for key in mine if mine[key] != theirs[key]]
    if differ:
        raise IncomparableRuns(f"--compare: the runs measured different problems ({'; '.join(differ)}); "
                               "ratios between them would mean nothing")
    if mine["run"] == "bench":
        keys = ["arm", "dtype", "batch_size"]
        a, b = bench_summary(results), bench_summary(other)
        if a.empty or b.empty or a[keys].merge(b[keys], on=keys).empty:
            raise IncomparableRuns(f"--compare: no arm, dtype and batch size was timed in both this folder and {name}")
    else:
        a, b = sweep_summary(results), sweep_summary(other)
        pairs = (lambda s: set(zip(s["optimizer"], s["batch_size"])))
        if a.empty or b.empty or not pairs(a) & pairs(b):
            raise IncomparableRuns(f"--compare: no optimizer and batch size finished a run in both this folder "
                                   f"and {name}")


def bench_ratios(results, other) -> pd.DataFrame:
    """Throughput of this run over the other's per arm, dtype and batch size timed in both.

    ``within_spread``: the two runs' min-max epoch times overlap (the ratio is
    within the timing noise); ``note``: what differs for this row (epochs
    timed, rows timed when an arm was timed on a subset and scaled).
    """
    keys = ["arm", "dtype", "batch_size"]
    both = bench_summary(results).merge(bench_summary(other), on=keys, suffixes=("", "_other"))
    both["ratio"] = both["examples_per_second"] / both["examples_per_second_other"]
    both["within_spread"] = (both["min_seconds"] <= both["max_seconds_other"]) & (
        both["min_seconds_other"] <= both["max_seconds"])
    notes = []
    for r in both.itertuples():
        note = []
        if r.repeats != r.repeats_other:
            note.append(f"{r.repeats} vs {r.repeats_other} epochs timed")
        if r.rows_timed != r.rows_timed_other:
            note.append(f"rows timed {r.rows_timed:.0f} vs {r.rows_timed_other:.0f}")
        notes.append("; ".join(note))
    both["note"] = notes
    return both[keys + ["examples_per_second", "examples_per_second_other", "ratio", "within_spread", "note"]]


def sweep_ratios(results, other, machine=None, other_machine=None) -> pd.DataFrame:
    """Seconds and epochs to target of this run over the other's, per optimizer and batch size (best eta of each).

    ``note`` says what differs for the row: the eta chosen, seeds finished or
    reaching the target (a mean over fewer seeds, or over seeds that did not all
    get there, is not the same figure).
    """
    a = best_per_batch_size(sweep_summary(results, machine))
    b = best_per_batch_size(sweep_summary(other, other_machine))
    both = a.merge(b, on=["optimizer", "batch_size"], suffixes=("", "_other"))
    both["seconds_ratio"] = both["seconds"] / both["seconds_other"]
    both["epochs_ratio"] = both["epochs"] / both["epochs_other"]
    notes = []
    for r in both.itertuples():
        note = []
        if abs(r.eta / r.eta_other - 1) > 1e-9:
            note.append(f"eta {r.eta:.3g} vs {r.eta_other:.3g}")
        if (r.reached, r.seeds) != (r.reached_other, r.seeds_other):
            note.append(f"reached {r.reached}/{r.seeds} vs {r.reached_other}/{r.seeds_other}")
        notes.append("; ".join(note))
    both["note"] = notes
    return both[["optimizer", "batch_size", "seconds", "seconds_other", "seconds_ratio", "epochs", "epochs_other",
                 "epochs_ratio", "note"]]
