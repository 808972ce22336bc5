"""report.md and the plots of a result folder, rebuilt from results.csv and machine.json alone.

``write_report(folder)`` is what every run calls at its end and what
``mbtrain report DIR`` calls later: the same inputs give the same Markdown.
The work is split by concern: :mod:`~mbtrain.bench.summaries` computes the
numbers (DataFrames), :mod:`~mbtrain.bench.comparison` decides whether two
folders may be compared, :mod:`~mbtrain.bench.markdown` and
:mod:`~mbtrain.bench.sections` write the text, :mod:`~mbtrain.bench.plots`
draws. This module reads the folder and puts them together.
"""
from __future__ import annotations

from pathlib import Path

from .._atomic import atomic_write
from .comparison import (
    IncomparableRuns,
    bench_ratios,
    check_comparable,
    machine_differences,
    run_kind,
    setting_differences,
    sweep_ratios,
)
from .machine import read_machine
from .markdown import bench_missing, compare_lines, fmt, header_lines, markdown_table, mean_sd, sweep_missing
from .plots import plot_bench, plot_sweep
from .results import read_results
from .sections import bench_lines, sweep_lines
from .summaries import (
    bench_coverage,
    bench_summary,
    best_per_batch_size,
    execution,
    missing_floors,
    noise_points,
    optimizer_names,
    planned_optimizers,
    scaling_verdict,
    sweep_coverage,
    sweep_summary,
    verdicts_by_optimizer,
)

__all__ = ["IncomparableRuns", "bench_summary", "best_per_batch_size", "fmt", "markdown_table", "mean_sd",
           "render_report", "scaling_verdict", "sweep_summary", "write_report"]


def render_report(folder, compare=None, *, partial=False) -> str:
    """The Markdown report of ``folder`` (and writes its plots there).

    Parameters
    ----------
    folder : str or Path
        A result folder: results.csv, and machine.json when the run wrote one.
    compare : str or Path or None
        Another result folder; adds a section with this run's figures over its.
    partial : bool
        The run was interrupted: say so at the top (machine.json's
        ``interrupted`` says it too, once the run has recorded how it ended).
        What is missing against the plan is listed either way.

    Raises
    ------
    FileNotFoundError
        No results.csv in ``folder`` or ``compare``.
    IncomparableRuns
        ``compare`` holds another kind of run (bench vs sweep) or another
        problem (data set, training rows, sizes, cost; for a sweep dtype and
        target); raised before anything is written.
    """
    folder = Path(folder)
    results = read_results(folder)
    machine = read_machine(folder)
    kind = run_kind(results, machine)
    if compare is not None:
        compare = Path(compare)
        other, other_machine = read_results(compare), read_machine(compare)
        check_comparable(results, machine, other, other_machine, name=f"`{compare.name}`")

    kinds = set(results["kind"].dropna())
    body, missing = [], []
    if kind == "bench" or kinds & {"bench", "floor", "check"}:
        coverage = bench_coverage(results, machine)
        missing, provisional = bench_missing(coverage, missing_floors(results, machine))
        summary = bench_summary(results)
        plots = plot_bench(summary, results, folder) if not summary.empty else []
        body += bench_lines(results, machine, summary, coverage, provisional, plots)
    if kind == "sweep" or "sweep" in kinds:
        lines, provisional = sweep_missing(sweep_coverage(results, machine),
                                           optimizer_names(planned_optimizers(machine, results)))
        missing += lines
        summary = sweep_summary(results, machine)
        if summary.empty:
            curves = int((results["kind"] == "curve").sum())
            body.append("## Time to target accuracy across batch sizes\n\nNo sweep run finished"
                        + (f" ({curves} learning-curve points of unfinished runs are in results.csv)." if curves
                           else "."))
        else:
            best = best_per_batch_size(summary)
            plots = plot_sweep(results, summary, best, noise_points(results), folder)
            body += sweep_lines(results, machine, summary, best, verdicts_by_optimizer(best), provisional, plots)
    if not kinds:
        body.append("Nothing was measured: results.csv holds no rows.\n")

    lines = header_lines(results, machine, execution(results, machine), missing, partial) + body
    if compare is not None:
        ratios = bench_ratios(results, other) if kind == "bench" else sweep_ratios(results, other, machine,
                                                                                    other_machine)
        lines += compare_lines(kind, compare.name, setting_differences(machine, other_machine),
                               machine_differences(machine, other_machine, results, other), ratios)
    return "\n".join(lines).rstrip() + "\n"


def write_report(folder, compare=None, *, partial=False) -> Path:
    """Write ``folder/report.md`` and the plots from results.csv and machine.json; returns the report's path.

    The report replaces the old one atomically (a reader never sees half of
    it); ``compare`` and ``partial`` are those of :func:`render_report`.
    """
    folder = Path(folder)
    text = render_report(folder, compare=compare, partial=partial)
    path = folder / "report.md"
    with atomic_write(path, "wb") as f:
        f.write(text.encode("utf-8"))
    return path
