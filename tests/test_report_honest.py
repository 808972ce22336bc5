"""Reports that never give a confident wrong answer (issue 15), on result folders written by hand.

Each folder here is a results.csv (and machine.json) built row by row, so the
test states exactly what was measured and what the report must say about it:
what is missing against the plan, verdicts the noise cannot support, and
comparisons of runs that did not measure the same problem.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mbtrain.bench.comparison import IncomparableRuns, check_comparable, machine_differences
from mbtrain.bench.machine import read_machine
from mbtrain.bench.report import render_report, write_report
from mbtrain.bench.results import COLUMNS, ResultsWriter, read_results
from mbtrain.bench.summaries import (bench_coverage, best_per_batch_size, execution, fastest_arms, scaling_verdict,
                                     seed_interval, sweep_coverage, sweep_summary)
from mbtrain.cli import main

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "benchmarks" / "results"
PROBLEM = dict(dataset="digits", sizes="64,30,10", cost="quadratic", rows=1437)


def table_rows(markdown):
    """The cells of every Markdown table row in ``markdown``."""
    return [[cell.strip() for cell in line.strip().strip("|").split(" | ")]
            for line in markdown.splitlines() if line.startswith("|") and line.strip("|:- ")]


def section(text, title):
    """The Markdown from heading ``title`` to the next heading of the same or a higher level."""
    level = title.split(" ")[0]
    body = text.split(title, 1)[1]
    ends = [body.find("\n" + "#" * k + " ") for k in range(1, len(level) + 1)]
    ends = [e for e in ends if e >= 0]
    return body[:min(ends)] if ends else body


def frame(rows):
    """``rows`` as results.csv would hold them: every column present."""
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def write_folder(folder, rows, machine=None):
    folder.mkdir(parents=True, exist_ok=True)
    with ResultsWriter(folder / "results.csv") as writer:
        for row in rows:
            writer.write(**row)
    if machine is not None:
        (folder / "machine.json").write_text(json.dumps(machine))
    return folder


def sweep_run(batch_size, seed, seconds, examples=None, eta=3.0, **problem):
    """One finished sweep run; ``seconds`` None: it did not reach the target."""
    reached = seconds is not None
    examples = examples if examples is not None else (seconds * 1e6 if reached else None)
    return dict(kind="sweep", **{**PROBLEM, **problem}, dtype="float32", arm="numba", batch_size=batch_size,
                eta=eta, eta_policy="fixed", seed=seed, target=0.9, max_epochs=10,
                status="reached" if reached else "not reached", reached=reached,
                seconds_to_target=seconds, examples_to_target=examples,
                epochs_to_target=examples / 1437 if reached else None,
                steps_to_target=examples / batch_size if reached else None,
                best_val_accuracy=0.95 if reached else 0.8, final_train_loss=0.1, final_val_loss=0.12,
                executor="serial", jobs=1)


def sweep_machine(batch_sizes, seeds, **settings):
    return {"run": "sweep", "dataset": "digits", "cpu_model": "Test CPU", "available_cores": 2,
            "settings": {"sizes": [64, 30, 10], "cost": "quadratic", "dtype": "float32",
                         "batch_sizes": list(batch_sizes), "target": 0.9, "max_epochs": 10, "eta": 3.0,
                         "eta_policy": "fixed", "seeds": seeds, **settings},
            "execution": {"executor": "serial", "jobs": 1}}


def bench_epoch(arm, dtype, batch_size, repeat, seconds, **problem):
    return dict(kind="bench", **{**PROBLEM, **problem}, dtype=dtype, arm=arm, arm_kind="backend", loss="quadratic",
                status="ok", batch_size=batch_size, repeat=repeat, rows_timed=PROBLEM["rows"], epoch_seconds=seconds,
                examples_per_second=PROBLEM["rows"] / seconds, compile_seconds=0.1, floor_seconds=0.001,
                floor_bound="compute", executor="serial", jobs=1)


def bench_check(arm, dtype, status="ok", **problem):
    return dict(kind="check", **{**PROBLEM, **problem}, dtype=dtype, arm=arm, arm_kind="backend", loss="quadratic",
                status=status, check_error=0.0, check_tolerance=1e-4, executor="serial", jobs=1)


def bench_machine(arms, dtypes, batch_sizes, repeats, **extra):
    return {"run": "bench", "dataset": "digits", "cpu_model": "Test CPU", "available_cores": 2,
            "settings": {"sizes": [64, 30, 10], "cost": "quadratic", "batch_sizes": list(batch_sizes),
                         "arms": list(arms), "dtypes": list(dtypes), "repeats": repeats, "rows": 1437},
            "execution": {"executor": "serial", "jobs": 1}, **extra}


# -- the noise: intervals over seeds and verdicts that name ties ----------------------------------------------------


def test_seed_interval_is_min_max_for_few_seeds_and_two_standard_errors_beyond():
    assert seed_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    half = 2 * pd.Series(values).std() / math.sqrt(6)
    assert seed_interval(values) == pytest.approx((3.5 - half, 3.5 + half))
    assert seed_interval([2.0, float("nan")]) == (2.0, 2.0)
    assert all(math.isnan(v) for v in seed_interval([]))


def test_fastest_batch_size_within_the_noise_is_not_crowned(tmp_path):
    # the quick sweep of issue 15: 0.00252 ± 0.0019 s beside 0.00163 ± 3.6e-05 s
    rows = [sweep_run(1, 0, 0.00118), sweep_run(1, 1, 0.00387),
            sweep_run(2, 0, 0.00160), sweep_run(2, 1, 0.00165),
            sweep_run(5, 0, 0.0100), sweep_run(5, 1, 0.0110)]
    folder = write_folder(tmp_path / "noisy", rows, sweep_machine([1, 2, 5], seeds=2))
    verdict = scaling_verdict(best_per_batch_size(sweep_summary(read_results(folder), read_machine(folder))))
    assert verdict["fastest"] == 2 and verdict["fastest_tied"] == [2, 1]
    text = section(write_report(folder).read_text(), "### Verdict")
    assert "**Fastest to target: batch sizes 1 and 2, not told apart**" in text
    assert "1: 0.00118–0.00387 s" in text and "batch size 2 has the least mean" in text
    assert "Fastest to target: batch size 2**" not in text


def test_a_clear_lead_is_stated_in_bold(tmp_path):
    rows = [sweep_run(10, s, t) for s, t in enumerate([0.7, 0.8, 0.75])] + \
           [sweep_run(20, s, t) for s, t in enumerate([0.40, 0.45, 0.42])]
    folder = write_folder(tmp_path / "clear", rows, sweep_machine([10, 20], seeds=3))
    text = section(write_report(folder).read_text(), "### Verdict")
    assert "**Fastest to target: batch size 20** (least SGD time; its seconds to target overlap no other" in text
    assert "provisional" not in text


def test_one_seed_gives_no_bold_ranking(tmp_path):
    folder = write_folder(tmp_path / "one", [sweep_run(10, 0, 0.7), sweep_run(20, 0, 0.4)],
                          sweep_machine([10, 20], seeds=1))
    text = section(write_report(folder).read_text(), "### Verdict")
    assert "- Fastest to target: batch size 20 (least SGD time, but from one seed: no spread" in text
    assert "**Fastest" not in text


def test_largest_batch_that_scales_says_when_the_noise_could_change_it():
    # examples to target: minimum 1e5 at b=10, so the limit is 2e5; b=50's seeds straddle it
    rows = [sweep_run(10, s, 0.1, examples=e) for s, e in enumerate([1.0e5, 1.0e5])] + \
           [sweep_run(20, s, 0.1, examples=e) for s, e in enumerate([1.5e5, 1.6e5])] + \
           [sweep_run(50, s, 0.1, examples=e) for s, e in enumerate([1.9e5, 2.3e5])] + \
           [sweep_run(100, s, 0.1, examples=e) for s, e in enumerate([4e5, 5e5])]
    results = frame(rows)
    verdict = scaling_verdict(best_per_batch_size(sweep_summary(results)))
    assert verdict["examples_min"] == 1e5
    assert verdict["largest_scaling"] == 20  # mean of b=50 is 2.1e5 > 2e5
    assert verdict["largest_scaling_range"] == (20, 50)
    clear = [r for r in rows if r["batch_size"] != 50]
    verdict = scaling_verdict(best_per_batch_size(sweep_summary(frame(clear))))
    assert verdict["largest_scaling"] == 20 and verdict["largest_scaling_range"] == (20, 20)


def test_largest_scaling_text_gives_the_range(tmp_path):
    rows = [sweep_run(10, s, 0.1 + s / 100, examples=1e5) for s in range(2)] + \
           [sweep_run(50, s, 0.3 + s / 100, examples=e) for s, e in enumerate([1.9e5, 2.3e5])]
    folder = write_folder(tmp_path / "scales", rows, sweep_machine([10, 50], seeds=2))
    text = section(write_report(folder).read_text(), "### Verdict")
    assert "**Largest batch size that still scales: 10 by the means, anywhere from 10 to 50 within the noise**" in text


def test_fastest_arms_names_arms_within_the_spread():
    rows = [bench_epoch("numba", "float32", 10, r, t) for r, t in enumerate([1.0, 1.1, 1.2])] + \
           [bench_epoch("numpy", "float32", 10, r, t) for r, t in enumerate([1.15, 1.3, 1.4])] + \
           [bench_epoch("loop", "float32", 10, r, t) for r, t in enumerate([9.0, 9.5, 9.9])]
    from mbtrain.bench.summaries import bench_summary

    best = fastest_arms(bench_summary(frame(rows)))
    assert best.loc[0, "arm"] == "numba" and best.loc[0, "within_spread"] == ["numpy"]


# -- what is missing ------------------------------------------------------------------------------------------------


def truncated_sweep(tmp_path, interrupted=None):
    planned = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    rows = [sweep_run(b, s, 0.1 * b ** 0.5 + s / 1000) for b in planned[:6] for s in range(2)]
    rows = [r for r in rows if not (r["batch_size"] == 50 and r["seed"] == 1)]  # b=50: 1 of 2 seeds
    machine = sweep_machine(planned, seeds=2)
    if interrupted is not None:
        machine["interrupted"] = interrupted
    return write_folder(tmp_path / "truncated", rows, machine)


def test_sweep_coverage_against_the_plan(tmp_path):
    folder = truncated_sweep(tmp_path)
    coverage = sweep_coverage(read_results(folder), read_machine(folder)).set_index("batch_size")
    assert list(coverage.index) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert coverage.loc[20, "runs_finished"] == 2 and coverage.loc[50, "runs_finished"] == 1
    assert (coverage.loc[[100, 200, 500, 1000], "runs_finished"] == 0).all()
    assert (coverage["runs_planned"] == 2).all()
    summary = sweep_summary(read_results(folder), read_machine(folder)).set_index("batch_size")
    assert summary.loc[50, "seeds"] == 1 and summary.loc[50, "seeds_planned"] == 2


def test_truncated_sweep_states_what_is_missing_and_qualifies_the_verdict(tmp_path):
    text = write_report(truncated_sweep(tmp_path)).read_text()
    assert "> **Incomplete**" in text
    missing = section(text, "## What is missing")
    assert "4 of 10 batch sizes missing: 100, 200, 500 and 1000 (no run finished)" in missing
    assert "batch size 50: 1 of 2 seeds finished" in missing
    assert "### Verdict (provisional: 4 of 10 batch sizes missing; 1 batch size with fewer seeds" in text
    verdict = section(text, "### Verdict")
    assert "**Fastest to target: batch size 1** (provisional; least SGD time" in verdict
    assert "**Largest batch size that still scales: 2** (provisional)" in verdict
    row = {r[0]: r for r in table_rows(section(text, "## Time to target"))}["50"]
    assert row[2] == "1/1, 1 of 2 seeds run"  # not a bare "1/1"


def test_partial_and_interrupted_reports_say_so_at_the_top(tmp_path):
    folder = truncated_sweep(tmp_path)
    text = render_report(folder, partial=True)
    assert text.splitlines()[2].startswith("> **Interrupted**")
    assert "4 of 10 batch sizes missing" in section(text, "## What is missing")
    folder = truncated_sweep(tmp_path / "recorded", interrupted=True)
    assert render_report(folder).splitlines()[2].startswith("> **Interrupted**")


def test_a_complete_run_has_no_missing_section(tmp_path):
    rows = [sweep_run(b, s, 0.1 * b + s / 100) for b in (10, 20) for s in range(2)]
    text = write_report(write_folder(tmp_path / "full", rows, sweep_machine([10, 20], seeds=2))).read_text()
    assert "What is missing" not in text and "Incomplete" not in text and "Interrupted" not in text


def test_bench_coverage_and_report_of_a_cut_bench(tmp_path):
    rows = [bench_check("numba", "float32"), bench_check("numpy", "float32", status="wrong")]
    rows += [bench_epoch("numba", "float32", b, r, 0.1 * b) for b in (1, 10) for r in range(3)]
    rows += [bench_epoch("numba", "float32", 100, 0, 5.0)]  # 1 of 3 epochs, then interrupted
    folder = write_folder(tmp_path / "bench", rows, bench_machine(["numba", "numpy"], ["float32", "float64"],
                                                                  [1, 10, 100, 1000], repeats=3))
    coverage = bench_coverage(read_results(folder), read_machine(folder)).set_index(["arm", "dtype", "batch_size"])
    assert coverage.loc[("numba", "float32", 100), ["planned", "timed"]].tolist() == [3, 1]
    assert coverage.loc[("numpy", "float32", 10), "planned"] == 0  # wrong: not timed by design, not missing
    assert coverage.loc[("numba", "float64", 1), "status"] == "not checked"
    text = write_report(folder, partial=True).read_text()
    missing = section(text, "## What is missing")
    assert "numba float32: batch size 1000 not timed; batch size 100: 1 of 3 epochs" in missing
    assert "numba float64: not reached (neither checked nor timed)" in missing
    assert "numpy float32" not in missing
    assert "Fastest arm per batch size (provisional: 29 of 36 timed epochs missing)" in text
    row = {(r[0], r[3]): r for r in table_rows(section(text, "## Throughput"))}[("numba", "100")]
    assert row[-1] == "1 of 3"


def test_report_without_machine_json_says_the_plan_is_unknown(tmp_path):
    folder = write_folder(tmp_path / "bare", [sweep_run(10, 0, 0.5), sweep_run(10, 1, 0.6)])
    text = write_report(folder).read_text()
    assert "settings: unknown (no machine.json)" in text and "What is missing" not in text


def test_empty_and_unfinished_runs_render(tmp_path):
    text = write_report(write_folder(tmp_path / "empty", [], sweep_machine([10], seeds=1)), partial=True).read_text()
    assert "> **Interrupted**" in text and "Nothing was measured" in text
    curve = dict(kind="curve", **PROBLEM, dtype="float32", arm="numba", batch_size=10, eta=3.0, seed=0, epoch=0.25,
                 val_accuracy=0.5, target=0.9, executor="serial", jobs=1)
    text = write_report(write_folder(tmp_path / "curve", [curve], sweep_machine([10, 20], seeds=1))).read_text()
    assert "No sweep run finished (1 learning-curve points" in text
    assert "2 of 2 batch sizes missing" in text


# -- how it was measured ----------------------------------------------------------------------------------------------


def test_execution_gives_the_workers_when_recorded_and_says_when_not(tmp_path):
    rows = [dict(sweep_run(10, s, 0.5), executor="dask", jobs=1) for s in range(2)]
    machine = sweep_machine([10], seeds=2)
    machine["execution"] = {"executor": "dask", "jobs": 1}
    folder = write_folder(tmp_path / "dask", rows, machine)
    assert execution(read_results(folder), read_machine(folder))["workers"].isna().all()
    assert "in parallel (dask, at most 1 at once; the number of workers is not recorded)" in render_report(folder)
    machine["execution"]["workers"] = 2
    (folder / "machine.json").write_text(json.dumps(machine))
    assert "in parallel (dask, 2 workers, at most 1 run at once)" in render_report(folder)


# -- comparisons: like with like ------------------------------------------------------------------------------------


def test_bench_against_sweep_is_refused_by_the_cli_and_nothing_is_written(tmp_path, capsys):
    bench = write_folder(tmp_path / "bench", [bench_check("numba", "float32"),
                                              bench_epoch("numba", "float32", 10, 0, 0.1)],
                         bench_machine(["numba"], ["float32"], [10], repeats=1))
    sweep = write_folder(tmp_path / "sweep", [sweep_run(10, 0, 0.5)], sweep_machine([10], seeds=1))
    with pytest.raises(IncomparableRuns, match="holds a sweep run and this folder a bench run"):
        render_report(bench, compare=sweep)
    assert main(["report", str(bench), "--compare", str(sweep)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "compare a bench with a bench, a sweep with a sweep" in err
    assert not (bench / "report.md").exists() and not (bench / "bench_throughput.png").exists()


def test_digits_against_the_committed_fashion_mnist_bench_is_refused(tmp_path):
    committed = COMMITTED / "book_784_30_10" / "bench"
    rows = [bench_check("numba", "float32"), bench_epoch("numba", "float32", 10, 0, 0.1)]
    mine = write_folder(tmp_path / "digits", rows, bench_machine(["numba"], ["float32"], [10], repeats=1))
    with pytest.raises(IncomparableRuns) as info:
        render_report(mine, compare=committed)
    message = str(info.value)
    assert "dataset digits here, fashion-mnist in `bench`" in message
    assert "sizes 64,30,10 here, 784,30,10" in message and "training rows 1437 here, 50000" in message


def test_same_problem_on_another_machine_is_compared_and_flagged(tmp_path):
    rows = [bench_check("numba", "float32")] + [bench_epoch("numba", "float32", 10, r, 0.10 + r / 1000)
                                                for r in range(3)]
    mine = write_folder(tmp_path / "new", rows, bench_machine(
        ["numba"], ["float32"], [10], repeats=3, blas=[{"user_api": "blas", "internal_api": "openblas",
                                                         "version": "0.3.31", "architecture": "Haswell"}],
        floor={"gemm_flops_per_second": {"float32": 100e9}}))
    rows = [bench_check("numba", "float32")] + [bench_epoch("numba", "float32", 10, r, 0.20) for r in range(2)]
    old_machine = bench_machine(["numba"], ["float32"], [10], repeats=2, cpu_model="Other CPU",
                                blas=[{"user_api": "blas", "internal_api": "openblas", "version": "0.3.31",
                                       "architecture": "SkylakeX"}], floor={"gemm_flops_per_second": {"float32": 50e9}})
    old_machine["cpu_model"] = "Other CPU"
    old = write_folder(tmp_path / "old", rows, old_machine)
    check_comparable(read_results(mine), read_machine(mine), read_results(old), read_machine(old))  # no raise
    differs = machine_differences(read_machine(mine), read_machine(old)).set_index("what")["differs"]
    assert differs["CPU"] and differs["BLAS kernel"] and differs["GEMM GFLOP/s float32"]
    assert not differs["cores available"]
    text = section(write_report(mine, compare=old).read_text(), "## Comparison with `old`")
    assert "**The machines or software differ** (CPU, BLAS kernel and GEMM GFLOP/s float32)" in text
    settings = {r[0]: r for r in table_rows(text)}
    assert settings["repeats"][1:] == ["3", "2"]
    ratio = [r for r in table_rows(text) if r[:3] == ["numba", "float32", "10"]][0]
    assert float(ratio[5]) == pytest.approx(0.20 / 0.101, rel=1e-2) and ratio[6] == "no"
    assert ratio[7] == "3 vs 2 epochs timed"


def test_gemm_rates_within_the_tolerance_are_the_same_machine():
    a = {"floor": {"gemm_flops_per_second": {"float32": 100e9}}}
    b = {"floor": {"gemm_flops_per_second": {"float32": 95e9}}}
    assert not machine_differences(a, b).set_index("what").loc["GEMM GFLOP/s float32", "differs"]


def test_sweeps_of_another_target_or_dtype_are_refused(tmp_path):
    mine = write_folder(tmp_path / "a", [sweep_run(10, 0, 0.5)], sweep_machine([10], seeds=1))
    other = write_folder(tmp_path / "b", [dict(sweep_run(10, 0, 0.5), target=0.8, dtype="float64")],
                         sweep_machine([10], seeds=1))
    with pytest.raises(IncomparableRuns, match="dtype float32 here, float64 in .*target 0.9 here, 0.8"):
        render_report(mine, compare=other)


def test_sweep_comparison_flags_rows_that_differ(tmp_path):
    mine = write_folder(tmp_path / "a", [sweep_run(10, s, 0.5) for s in range(2)], sweep_machine([10], seeds=2))
    other = write_folder(tmp_path / "b", [sweep_run(10, 0, 1.0, eta=1.5), sweep_run(10, 1, None, eta=1.5)],
                         sweep_machine([10], seeds=2, eta_policy="sqrt"))
    text = section(write_report(mine, compare=other).read_text(), "## Comparison with `b`")
    assert {r[0]: r for r in table_rows(text)}["eta_policy"][1:] == ["fixed", "sqrt"]
    row = {r[0]: r for r in table_rows(text)}["10"]
    assert row[-1] == "eta 3 vs 1.5; reached 2/2 vs 1/2"


# -- the committed results still render; plots leave pyplot alone ------------------------------------------------------


@pytest.mark.parametrize("folder", sorted(p.parent.relative_to(COMMITTED).as_posix()
                                          for p in COMMITTED.glob("*/*/results.csv")))
def test_committed_results_render(folder, tmp_path):
    for name in ("results.csv", "machine.json"):
        (tmp_path / name).write_bytes((COMMITTED / folder / name).read_bytes())
    text = write_report(tmp_path).read_text()
    assert "What is missing" not in text and "Interrupted" not in text  # complete, uninterrupted runs
    assert ("### Verdict" in text) if "sweep" in folder else ("Fastest arm per batch size: " in text)


def test_plots_use_no_pyplot_and_no_global_backend(tmp_path):
    rows = [sweep_run(b, s, 0.1 * b + s / 100) for b in (10, 20) for s in range(2)]
    folder = write_folder(tmp_path / "plots", rows, sweep_machine([10, 20], seeds=2))
    code = ("import sys, matplotlib; before = matplotlib.rcParams._get('backend'); "
            "from mbtrain.bench.report import write_report; write_report(sys.argv[1]); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            "assert matplotlib.rcParams._get('backend') == before, 'backend changed'")
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True)
    assert (folder / "sweep_seconds_to_target.png").stat().st_size > 0
