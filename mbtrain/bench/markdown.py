"""The Markdown of a report: numbers formatted, tables, and the sentences that state verdicts.

Every function here takes the DataFrames of :mod:`~mbtrain.bench.summaries`
(or :mod:`~mbtrain.bench.comparison`) and returns lines of Markdown; none
reads a file or draws. A verdict is written in bold only when the data
behind it is complete and its lead is larger than the noise; otherwise the
sentence says what is missing ("provisional: ...") or names the batch sizes
it cannot tell apart.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .machine import narrower_blas_warnings
from .steal import steal_warning

# -- formatting ------------------------------------------------------------------------


def fmt(value, digits=3) -> str:
    """A number with ``digits`` significant digits ("" for missing; thousands kept whole, grouped from 10,000)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if abs(value) >= 10 ** digits or (value == int(value) and abs(value) < 1e15):
            return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.0f}"
        text = f"{value:.{digits}g}"
        return f"{value:.0f}" if "e+" in text else text  # 999.7 rounds up to 1e+03: write 1000
    return str(value)


def fmt_mean_sd(mean, sd, digits=3) -> str:
    """``"mean ± sd"`` ("" without a mean; the mean alone without an sd, e.g. from one value)."""
    if pd.isna(mean):
        return ""
    return fmt(float(mean), digits) if pd.isna(sd) else f"{fmt(float(mean), digits)} ± {fmt(float(sd), 2)}"


def mean_sd(values, digits=3) -> str:
    """``"mean ± sd"`` of the non-missing values ("" when there are none; no sd for one)."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    if values.empty:
        return ""
    return fmt_mean_sd(values.mean(), values.std(ddof=1) if len(values) > 1 else math.nan, digits)


def join_and(items) -> str:
    """``"a, b and c"``."""
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``frame`` (cells formatted with :func:`fmt`; numbers right-aligned)."""
    if frame.empty:
        return "_(no rows)_\n"
    align = ["right" if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
             else "left" for c in frame.columns]
    cells = pd.DataFrame({str(c).replace("|", "\\|"): [fmt(v).replace("|", "\\|") for v in frame[c]]
                          for c in frame.columns})
    return cells.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True) + "\n"


PLOT_TITLES = {"bench_throughput.png": "examples per second", "bench_speedup.png": "speedup over loop",
               "sweep_epochs_to_target.png": "epochs to target", "sweep_steps_to_target.png": "steps to target",
               "sweep_seconds_to_target.png": "seconds to target", "sweep_learning_curves.png": "learning curves",
               "sweep_noise_scale.png": "gradient noise scale",
               "sweep_optimizers_steps_to_target.png": "steps to target per optimizer"}


def image_links(names) -> list:
    """One Markdown image line per plot file name."""
    return [f"![{PLOT_TITLES.get(name, name)}]({name})\n" for name in names]


# -- run, machine, execution ------------------------------------------------------------


def execution_note(ways: pd.DataFrame) -> str:
    """How the numbers were taken (``ways``: :func:`mbtrain.bench.summaries.execution`)."""
    parts = []
    for executor, jobs, workers in ways.itertuples(index=False):
        jobs = fmt(jobs)  # "2", also when the CSV column was read as floats
        if executor == "serial":
            parts.append("serially, one measurement at a time in one process")
            continue
        if pd.notna(workers):
            count = (f"{fmt(workers)} worker{'' if fmt(workers) == '1' else 's'}"
                     + ("" if jobs == "-1" else f", at most {jobs} run{'' if jobs == '1' else 's'} at once"))
        elif jobs == "-1":
            count = "as many at once as the workers take; the number of workers is not recorded"
        elif executor == "dask":
            count = f"at most {jobs} at once; the number of workers is not recorded"
        else:
            count = f"{jobs} at once"
        parts.append(f"in parallel ({executor}, {count}): seconds are wall time while other runs shared the "
                     "machine, comparable with each other but not with serial timings")
    return "; and ".join(parts)


def header_lines(results, machine, ways, missing, partial) -> list:
    """Title, the interrupted/incomplete banner with what is missing, the Run and Machine sections."""
    run = machine.get("run") or ("sweep" if "sweep" in set(results["kind"].dropna()) else "bench")
    dataset = machine.get("dataset") or (results["dataset"].dropna().iloc[0] if results["dataset"].notna().any()
                                         else "")
    lines = [f"# mbtrain {run}: {dataset}\n"]
    if partial or machine.get("interrupted"):
        lines.append("> **Interrupted** (Ctrl-C or SIGTERM): this report covers only what was measured before "
                     "the interruption.\n")
    elif missing:
        lines.append("> **Incomplete**: results.csv holds less than the run planned (a run killed before it "
                     "could say so, or a file cut short); every verdict below is provisional.\n")
    if missing:
        lines.append("## What is missing\n")
        lines.extend(f"- {line}" for line in missing)
        lines.append("")
    lines.append("## Run\n")
    lines.append(f"- command: `{machine.get('command', '?')}`")
    lines.append(f"- started: {machine.get('timestamp', '?')}")
    if machine.get("quick"):
        lines.append("- `--quick`: a reduced run")
    lines.append(f"- data set: **{machine.get('dataset', '?')}** — {machine.get('dataset_note', '')}")
    for note in machine.get("notes", []):
        lines.append(f"- {note}")
    settings = machine.get("settings", {})
    if settings:
        lines.append("- settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    else:
        lines.append("- settings: unknown (no machine.json): what the run planned cannot be checked")
    lines.append("- measured: " + execution_note(ways))
    for earlier in machine.get("resumed_from", []):
        lines.append(f"- resumed a run started {earlier.get('timestamp', '?')} (`{earlier.get('command', '?')}`); "
                     "its finished measurements were kept, not repeated")
    lines.append("")
    lines.append("## Machine\n")
    lines.append(f"- CPU: {machine.get('cpu_model', '?')}, {machine.get('available_cores', '?')} cores available "
                 f"({machine.get('logical_cpus', '?')} logical CPUs)" +
                 (f", ISA {machine['isa']}" if machine.get("isa") else ""))
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items() if v))
    pools = []
    for pool in machine.get("blas", []):
        detail = ", ".join(str(pool[k]) for k in ("threading_layer", "architecture", "kernel_isa") if pool.get(k))
        pools.append(" ".join(str(pool[k]) for k in ("internal_api", "version") if pool.get(k))
                     + (f" ({detail})" if detail else ""))
    lines.extend(f"- BLAS: {pool}" for pool in dict.fromkeys(pools))
    target = machine.get("numba_target") or {}
    if target:
        lines.append(f"- numba compiles for: {target.get('cpu', '?')} ({target.get('isa') or 'ISA unknown'})")
    if machine.get("environment"):
        lines.append("- environment: " + ", ".join(f"`{k}={v}`" for k, v in machine["environment"].items()))
    lines.extend(f"- **Warning: BLAS runs a kernel narrower than the CPU supports.** {sentence}"
                 for sentence in narrower_blas_warnings(machine))
    share = machine.get("steal_share")
    if share is not None:
        lines.append(f"- hypervisor steal during the run (`/proc/stat`): {share:.1%} of the CPU time used")
        warning = steal_warning([share], " during this run")
        if warning:
            lines.append(f"- **Warning: {warning}**")
    threads = machine.get("threads", {})
    if threads:
        lines.append("- threads (set for every arm alike): " + ", ".join(f"{k} {v}" for k, v in threads.items()))
    lines.append("")
    return lines


# -- what is missing ---------------------------------------------------------------------


def bench_missing(coverage: pd.DataFrame, floors: list) -> tuple:
    """``(lines, provisional)``: what the bench planned and did not time, and the qualifier of its verdicts."""
    lines = [f"hardware floor of {d}: not measured" for d in floors]
    short = coverage[coverage["timed"] < coverage["planned"]]
    for (arm, dtype), g in short.groupby(["arm", "dtype"], sort=False):
        status = g["status"].iloc[0]
        if status == "not checked" and (g["timed"] == 0).all():
            lines.append(f"{arm} {dtype}: not reached (neither checked nor timed)")
            continue
        none = g.loc[g["timed"] == 0, "batch_size"]
        some = g[g["timed"] > 0]
        parts = [f"batch size{'s' if len(none) > 1 else ''} {join_and(none)} not timed"] if len(none) else []
        parts += [f"batch size {r.batch_size}: {r.timed} of {r.planned} epochs" for r in some.itertuples()]
        lines.append(f"{arm} {dtype}: " + "; ".join(parts))
    planned = int(coverage["planned"].sum())
    timed = int(coverage[["timed", "planned"]].min(axis=1).sum())
    provisional = f"provisional: {planned - timed} of {planned} timed epochs missing" if timed < planned else ""
    return lines, provisional


def sweep_missing(coverage: pd.DataFrame, names: dict | None = None) -> tuple:
    """``(lines, provisional)``: the batch sizes and seeds the sweep planned and did not finish.

    ``coverage`` has a row per optimizer and batch size; with several
    optimizers each line names its optimizer (``names``: label -> name).
    """
    if coverage.empty:
        return [], ""
    names = names or {}
    several = coverage["optimizer"].nunique() > 1
    lines, qualifiers = [], []
    absent_total = short_total = 0
    for optimizer, part in coverage.groupby("optimizer", sort=False):
        who = f"{names.get(optimizer, optimizer)}: " if several else ""
        absent = part[part["runs_finished"] == 0]
        short = part[(part["runs_finished"] > 0) & (part["runs_finished"] < part["runs_planned"])]
        total = len(part)
        if not absent.empty:
            lines.append(f"{who}{len(absent)} of {total} batch sizes missing: {join_and(absent['batch_size'])} "
                         "(no run finished)")
        for r in short.itertuples():
            if r.etas_planned == 1:
                lines.append(f"{who}batch size {r.batch_size}: {r.runs_finished} of {r.seeds_planned} seeds finished")
            else:
                lines.append(f"{who}batch size {r.batch_size}: {r.runs_finished} of {r.runs_planned} runs finished "
                             f"({r.etas_planned} etas × {r.seeds_planned} seeds)")
        absent_total += len(absent)
        short_total += len(short)
    total = len(coverage)
    unit = "batch sizes" if not several else "optimizer and batch size pairs"
    if absent_total:
        qualifiers.append(f"{absent_total} of {total} {unit} missing")
    if short_total:
        qualifiers.append(f"{short_total} {unit if short_total > 1 else unit[:-1]} with fewer seeds or etas "
                          "than planned")
    return lines, ("provisional: " + "; ".join(qualifiers)) if qualifiers else ""


# -- comparison ---------------------------------------------------------------------------


def compare_lines(kind, other_name, settings_diff, machine_diff, ratios) -> list:
    """The "Comparison with OTHER" section (frames from :mod:`~mbtrain.bench.comparison`)."""
    shared = "data set, training rows, sizes, cost" + (", dtype and target" if kind == "sweep" else "")
    lines = [f"## Comparison with `{other_name}`\n", f"Both runs measured the same problem ({shared}).\n"]
    if not settings_diff.empty:
        lines.append("Settings that differ (the ratios below compare them too):\n")
        lines.append(markdown_table(settings_diff.astype(str)))
    differ = machine_diff[machine_diff["differs"].astype(bool)]
    if not differ.empty:
        lines.append(f"**The machines or software differ** ({join_and(differ['what'])}): a ratio mixes that "
                     "difference with the code's.\n")
    else:
        lines.append("Same machine and software as far as machine.json tells (CPU, cores, ISA, BLAS kernel, GEMM "
                     "and FMA-probe rates within 10%, threads, versions).\n")
    if not machine_diff.empty:
        shown = machine_diff.copy()
        for column in ("this run", "other run"):
            shown[column] = ["?" if v is None or v is pd.NA else str(v) for v in shown[column]]
        lines.append(markdown_table(shown.astype({"differs": bool})))
    if kind == "bench":
        lines.append("Throughput: ratio > 1 means this run is faster; `within spread`: the two runs' min–max "
                     "epoch times overlap, so the ratio is inside the timing noise.\n")
        lines.append(markdown_table(pd.DataFrame({
            "arm": ratios["arm"], "dtype": ratios["dtype"], "batch size": ratios["batch_size"].astype(int),
            "examples/s": ratios["examples_per_second"], "examples/s other": ratios["examples_per_second_other"],
            "ratio": ratios["ratio"], "within spread": ratios["within_spread"], "note": ratios["note"]})))
    else:
        lines.append("Time to target: ratio < 1 means this run got there in less time / fewer epochs (best eta of "
                     "each run per batch size; `note` says where they differ).\n")
        several = ratios["optimizer"].nunique() > 1
        lines.append(markdown_table(pd.DataFrame({
            **({"optimizer": ratios["optimizer"]} if several else {}),
            "batch size": ratios["batch_size"], "seconds": ratios["seconds"],
            "seconds other": ratios["seconds_other"], "seconds ratio": ratios["seconds_ratio"],
            "epochs": ratios["epochs"], "epochs other": ratios["epochs_other"],
            "epochs ratio": ratios["epochs_ratio"], "note": ratios["note"]})))
    lines.append("")
    return lines
