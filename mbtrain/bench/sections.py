"""The bench and sweep sections of a report: result tables and the verdicts drawn from them.

The tables come from :mod:`~mbtrain.bench.summaries`; this module decides how
strongly each verdict may be stated. A verdict is qualified as provisional
when the run did not measure all it planned, names several batch sizes (or
arms) together when their spreads over seeds (or repeats) overlap, and drops
the bold when a single seed leaves nothing to judge the noise by.
"""
from __future__ import annotations

import pandas as pd

from .markdown import fmt, fmt_mean_sd, image_links, join_and, markdown_table
from .plots import OVERLAY_PLOT
from .results import SGD_LABEL
from .side_by_side import side_by_side_lines
from .summaries import SMALL_BATCH, fastest_arms, interval_name, noise_points, optimizer_names, reference_etas

# -- bench ------------------------------------------------------------------------------


def _optimizer_of(rows) -> str:
    """The optimizer label the rows trained with (a bench has one)."""
    labels = rows["optimizer"].dropna() if "optimizer" in rows else pd.Series(dtype=object)
    return labels.iloc[0] if not labels.empty else SGD_LABEL


def _check_text(checks) -> str:
    """What the correctness check did: one SGD step, or a few steps of an optimizer with a state."""
    optimizer = _optimizer_of(checks)
    steps = pd.to_numeric(checks["steps"], errors="coerce").dropna()
    steps = int(steps.max()) if not steps.empty else 1  # a folder from before the column: one step
    if steps == 1 and optimizer == SGD_LABEL:
        how = "takes one SGD step on one mini-batch of 32 rows from the shared initial weights"
    else:
        how = (f"starts from the shared initial weights and a fresh optimizer state and takes {steps} "
               f"step{'s' if steps > 1 else ''} of {optimizer} on mini-batches of 32 rows (the later steps use "
               "the state the first left)")
    text = (f"Each arm {how}; its update is compared with the `loop` reference (float64, same loss, same update "
            "rule): relative error ‖u − u_ref‖ / ‖u_ref‖. Arms over the tolerance are **wrong** and not timed.")
    if optimizer.startswith("adam(") and (checks["dtype"] == "float32").any():
        text += (" Adam's float32 tolerance is looser: its step divides by the gradient's root mean square, so "
                 "where a gradient is near eps float32's rounding of it moves that step by a large part.")
    return text + "\n"


def _probe_shape(machine) -> str:
    """How the FMA probe ran, from machine.json's floor ("" for a folder from before the probe)."""
    probe = (machine.get("floor") or {}).get("probe") or {}
    if not probe:
        return "(not measured in this run)"
    return (f"({probe.get('accumulators')} independent {probe.get('vector_bits')}-bit accumulators per thread, "
            f"compiled in {fmt(probe.get('compile_seconds'))} s, apart)")


def bench_lines(results, machine, summary, coverage, provisional, plots) -> list:
    """The Hardware floor, Correctness check and Throughput sections."""
    lines = []
    floor = results[results["kind"] == "floor"]
    checks = results[results["kind"] == "check"]
    settings = machine.get("settings", {})
    if not floor.empty:
        lines.append("## Hardware floor (measured in this run)\n")
        source = floor["compute_rate_source"].fillna("gemm")  # a folder from before the probe: GEMM alone
        lines.append(markdown_table(pd.DataFrame({
            "dtype": floor["dtype"],
            "GEMM GFLOP/s": floor["gemm_flops_per_second"].astype(float) / 1e9,
            "FMA probe GFLOP/s": pd.to_numeric(floor["probe_flops_per_second"], errors="coerce") / 1e9,
            "compute rate from": source,
            "bandwidth GB/s": floor["bandwidth_bytes_per_second"].astype(float) / 1e9,
            # a folder from before the read probe: numpy's one-core sum
            "bandwidth from": floor["bandwidth_source"].fillna("numpy") if "bandwidth_source" in floor else "numpy",
            "epoch GFLOP": floor["epoch_flops"].astype(float) / 1e9,
            "epoch MB read": floor["epoch_bytes"].astype(float) / 1e6,
            "compute floor s": floor["compute_floor_seconds"].astype(float),
            "memory floor s": floor["memory_floor_seconds"].astype(float),
            "floor s": floor["floor_seconds"].astype(float),
            "bound": floor["floor_bound"],
        })))
        lines.append(
            "\nFLOPs of an epoch: forward 2·n·Σ n_in·n_out, weight gradients the same, hidden deltas "
            "2·n·Σ_{l≥1} n_in·n_out (element-wise work not counted); bytes: the inputs, read once. "
            "The GEMM rate is a large square matrix product with numpy's BLAS at the benchmark's thread "
            "count; the FMA probe is the peak of this CPU's vector FMA units as numba compiles for it "
            + _probe_shape(machine) + ", at the same thread count; the compute floor takes the higher of "
            "the two (a GEMM rate is only as fast as the BLAS kernel numpy runs). The bandwidth is the "
            "higher of a reduction over an array far larger than the caches on every thread (numba) and "
            "numpy's one-core sum.\n")
        for r, rate_from in zip(floor.itertuples(), source):
            rate = "the FMA probe's rate" if rate_from == "probe" else "the GEMM rate"
            lines.append(f"- **{r.dtype}: {r.floor_bound}-bound** — the epoch's FLOPs at {rate} take "
                         f"{fmt(float(r.compute_floor_seconds))} s, reading its inputs "
                         f"{fmt(float(r.memory_floor_seconds))} s.")
        lines.append("")

    if not checks.empty:
        lines.append("## Correctness check before timing\n")
        lines.append(_check_text(checks))
        table = checks[["arm", "arm_kind", "loss", "dtype", "check_error", "check_tolerance", "status", "note"]].copy()
        table["note"] = table["note"].fillna("")
        table.columns = ["arm", "kind", "loss trained", "dtype", "relative error", "tolerance", "status", "note"]
        lines.append(markdown_table(table))
        for r in checks[checks["status"] == "wrong"].itertuples():
            lines.append(f"- **{r.arm} ({r.dtype}) is WRONG**: {r.note if isinstance(r.note, str) else ''}")
        for r in checks[checks["status"] == "unavailable"].drop_duplicates("arm").itertuples():
            lines.append(f"- {r.arm} skipped: {r.note}")
        lines.append("")

    if summary.empty:
        if not results[results["kind"].isin(["floor", "check"])].empty:
            lines.append("## Throughput\n\nNo epoch was timed.\n")
        return lines
    planned = coverage.set_index(["arm", "dtype", "batch_size"])["planned"]
    lines.append("## Throughput\n")
    lines.append(markdown_table(pd.DataFrame({
        "arm": summary["arm"], "kind": summary["arm_kind"], "dtype": summary["dtype"],
        "batch size": summary["batch_size"].astype(int), "compile s": summary["compile_seconds"],
        "median epoch s": summary["median_seconds"],
        "spread s (min–max)": [f"{fmt(a)}–{fmt(b)}" for a, b in zip(summary["min_seconds"], summary["max_seconds"])],
        "examples/s": summary["examples_per_second"],
        "speedup over loop": summary["speedup_over_loop"],
        "× floor": summary["times_floor"],
        "rows timed": [f"{int(t)}" + ("" if t == r else f" of {int(r)}") for t, r in
                       zip(summary["rows_timed"], summary["rows"])],
        "epochs timed": [f"{k}" + ("" if k >= planned.get((a, d, int(b)), k) else f" of {planned[(a, d, int(b))]}")
                         for k, a, d, b in zip(summary["repeats"], summary["arm"], summary["dtype"],
                                               summary["batch_size"])],
    })))
    repeats = settings.get("repeats", int(summary["repeats"].max()))
    lines.append(
        f"\nMedian of {repeats} timed epochs of {_optimizer_of(results[results['kind'] == 'bench'])} after one "
        "warm-up (compile time reported apart, not included); every epoch starts from the same initial weights "
        "and a fresh optimizer state and runs the same batch order. "
        "`× floor` is the median epoch time over the hardware floor (1 = at the floor). "
        "Speedup is over `loop` at the same batch size and dtype.")
    scaled = summary[summary["rows_timed"] < summary["rows"]]
    if not scaled.empty:
        lines.append(f"Arms slower than {fmt(settings.get('max_epoch_seconds', float('nan')))} s per epoch "
                     f"({', '.join(sorted(set(scaled['arm'])))}) were timed on the first rows of the shuffled "
                     "order (whole mini-batches) and scaled to the full epoch; `rows timed` says how many.")
    arm_info = machine.get("arms", {})
    for r in summary[summary["arm_kind"] == "peer"].drop_duplicates("arm").itertuples():
        lines.append(f"- Peer **{r.arm}** (not mbtrain; trains loss `{r.loss}`): "
                     f"{arm_info.get(r.arm, {}).get('description', '')}")
    lines.append("")
    best = fastest_arms(summary)
    lines.append("Fastest arm per batch size" + (f" ({provisional})" if provisional else "") + ": " + "; ".join(
        f"{r.dtype} b={r.batch_size}: {r.arm} ({fmt(r.examples_per_second)} ex/s, {fmt(r.times_floor)}× floor"
        + (f"; {join_and(r.within_spread)} within its min–max spread" if r.within_spread else "") + ")"
        for r in best.itertuples()) + ".\n")
    lines.extend(image_links(plots))
    return lines


# -- sweep ------------------------------------------------------------------------------


def _reached(reached, seeds, diverged, planned) -> str:
    text = f"{reached}/{seeds}"
    if seeds < planned:
        text += f", {seeds} of {planned} seeds run"
    return text + (f" ({diverged} diverged)" if diverged else "")


def _eta_clause(settings, policy, names, etas) -> str:
    """How eta was chosen: the policy, its reference batch size and each optimizer's base eta."""
    if len(names) == 1:
        (label, name), = names.items()
        eta = fmt(etas.get(label, settings.get("eta")))
        clause = (f" (reference batch size {settings.get('ref_batch_size')}, base eta {eta})" if policy != "fixed"
                  else f" (eta {eta})")
        return clause + ("" if name == "sgd" else f"; optimizer **{label}**")
    base = ", ".join(f"**{names[label]}** {fmt(eta)}" for label, eta in etas.items() if label in names)
    return ((f" (reference batch size {settings.get('ref_batch_size')}; " if policy != "fixed" else " (")
            + f"each optimizer from its own base eta: {base})")


def _excluded(results) -> str:
    """What the sweep's seconds leave out: evaluation, and compilation where the runs recorded theirs."""
    runs = results[results["kind"] == "sweep"]
    compiled = pd.to_numeric(runs["compile_seconds"], errors="coerce").dropna()
    if compiled.empty:  # a folder from before runs warmed their own kernels
        return "evaluation excluded"
    return ("evaluation and compilation excluded: each run compiled, or loaded from numba's cache, the kernels it "
            "needs in its own process, a worker's too, before its clock started; at most "
            f"{fmt(float(compiled.max()))} s per run, in results.csv's compile_seconds")


def sweep_lines(results, machine, summary, best, verdicts, provisional, plots) -> list:
    """The Time to target section: settings, the table, best etas (grid), the verdicts, the noise scale.

    ``verdicts``: :func:`~mbtrain.bench.summaries.verdicts_by_optimizer`. With
    several optimizers each gets its verdict and the section ends with them
    side by side (:mod:`~mbtrain.bench.side_by_side`).
    """
    settings = machine.get("settings", {})
    targets = pd.to_numeric(results["target"], errors="coerce").dropna()
    target = settings.get("target", targets.iloc[0] if not targets.empty else None)
    policy = settings.get("eta_policy", "fixed")
    how = interval_name(int(summary["seeds"].max()))
    names = optimizer_names(summary["optimizer"])
    several = len(names) > 1
    lines = ["## Time to target accuracy across batch sizes\n"]
    lines.append(
        f"Target validation accuracy {fmt(target)} within {settings.get('max_epochs', '?')} epochs; "
        f"{settings.get('seeds', '?')} seeds (seed s fixes the initial weights, the same for every batch size"
        f"{' and optimizer' if several else ''}, and the shuffle order); eta policy **{policy}**"
        + _eta_clause(settings, policy, names, reference_etas(machine) or dict.fromkeys(names))
        + f"; backend {settings.get('backend', 'numba')}, dtype {settings.get('dtype', '')}. "
        f"Accuracy is evaluated {settings.get('evals_per_epoch', 4)} times per epoch; seconds are training time "
        f"only ({_excluded(results)}). Mean ± standard deviation over the seeds that reached the target; the "
        f"verdict compares batch sizes by their {how} and names together those it cannot tell apart.\n")
    first = {"optimizer": [names[o] for o in summary["optimizer"]]} if several else {}
    lines.append(markdown_table(pd.DataFrame({
        **first, "batch size": summary["batch_size"], "eta": summary["eta"],
        "reached": [_reached(*r) for r in zip(summary["reached"], summary["seeds"], summary["diverged"],
                                              summary["seeds_planned"])],
        "epochs to target": [fmt_mean_sd(m, s) for m, s in zip(summary["epochs"], summary["epochs_sd"])],
        "steps to target": [fmt_mean_sd(m, s) for m, s in zip(summary["steps"], summary["steps_sd"])],
        "seconds to target": [fmt_mean_sd(m, s) for m, s in zip(summary["seconds"], summary["seconds_sd"])],
        "best val acc": summary["best_val_accuracy"],
        "final train loss": summary["final_train_loss"], "final val loss": summary["final_val_loss"],
    })))
    if policy == "grid":
        lines.append("\n### Best eta per batch size (grid)\n")
        bands = []
        for _, g in summary.groupby(["optimizer", "batch_size"], sort=False):  # best's order
            ok = g[g["reached"] == g["seeds"]]["eta"]
            bands.append(f"{fmt(ok.min())}–{fmt(ok.max())}" if not ok.empty else "none")
        first = {"optimizer": [names[o] for o in best["optimizer"]]} if several else {}
        lines.append(markdown_table(pd.DataFrame({
            **first, "batch size": best["batch_size"], "best eta": best["eta"],
            "seconds to target": [fmt_mean_sd(m, s) for m, s in zip(best["seconds"], best["seconds_sd"])],
            "epochs to target": [fmt_mean_sd(m, s) for m, s in zip(best["epochs"], best["epochs_sd"])],
            "etas reaching target (all seeds)": bands})))
    for optimizer, verdict in verdicts.items():
        lines.extend(verdict_lines(verdict, best[best["optimizer"] == optimizer], policy, provisional,
                                   optimizer=names[optimizer] if several else None,
                                   time_word="SGD" if names[optimizer].split("(")[0] == "sgd" else "training"))
    lines.extend(_noise_lines(results, verdicts, names))
    overlay = [name for name in plots if name == OVERLAY_PLOT]
    if several:
        lines.extend(side_by_side_lines(summary, best, verdicts, names, machine, provisional, overlay))
    lines.append("")
    lines.extend(image_links([name for name in plots if name not in overlay]))
    return lines


def _tied(names, best, metric, unit) -> str:
    rows = best.set_index("batch_size")
    return ", ".join(f"{b}: {fmt(rows.loc[b, f'{metric}_lo'])}–{fmt(rows.loc[b, f'{metric}_hi'])}{unit}"
                     for b in names)


def verdict_lines(verdict: dict, best: pd.DataFrame, policy: str, provisional: str, optimizer=None,
                  time_word="SGD") -> list:
    """The Verdict subsection (``verdict``: :func:`mbtrain.bench.summaries.scaling_verdict`).

    ``optimizer``: its name in the heading, when the sweep ran several;
    ``time_word``: what the seconds measure ("SGD" time, or "training" time).
    """
    lines = [f"\n### Verdict{f': {optimizer}' if optimizer else ''}" + (f" ({provisional})" if provisional else "")
             + "\n"]
    if not verdict:
        lines.append("No batch size reached the target with every seed: raise `--max-epochs`, lower `--target` "
                     "or change eta." + (" Part of the run is missing, so a batch size not measured may "
                                         "reach it." if provisional else "") + "\n")
        return lines
    first = "provisional; " if provisional else ""
    how = interval_name(verdict["most_seeds"])
    one_seed = verdict["seeds"] <= 1
    fastest, tied = verdict["fastest"], verdict["fastest_tied"]
    if one_seed:
        lines.append(f"- Fastest to target: batch size {fastest} ({first}least {time_word} time, but from one seed: "
                     "no spread to judge the ranking by; run more seeds before trusting it).")
    elif len(tied) == 1:
        lines.append(f"- **Fastest to target: batch size {fastest}** ({first}least {time_word} time; its seconds to "
                     f"target overlap no other batch size's, {how}).")
    else:
        seconds = best.set_index("batch_size").loc[fastest, "seconds"]
        lines.append(f"- **Fastest to target: batch sizes {join_and(sorted(tied))}, not told apart** ({first}their "
                     f"seconds to target overlap, {how}: {_tied(sorted(tied), best, 'seconds', ' s')}); batch size "
                     f"{fastest} has the least mean ({fmt(seconds)} s).")
    scaling = verdict["largest_scaling"]
    low, high = verdict["largest_scaling_range"]
    rule = (f"the largest whose examples-to-target stay within 2× of the minimum ({fmt(verdict['examples_min'])} "
            "examples), i.e. steps-to-target still drop at least half-proportionally (McCandlish et al.'s critical "
            "batch size, measured)")
    qualifier = " (provisional)" if provisional else ""
    if low == high == scaling:
        lines.append(f"- **Largest batch size that still scales: {scaling}**{qualifier} — {rule}.")
    else:
        lines.append(f"- **Largest batch size that still scales: {scaling} by the means, anywhere from {low} to "
                     f"{high} within the noise**{qualifier} — {rule}; the seeds' examples to target ({how}) "
                     "straddle 2× the minimum.")
    few, few_tied = verdict["fewest_epochs"], verdict["fewest_epochs_tied"]
    small = [b <= SMALL_BATCH for b in few_tied]
    word = ("**agrees**" if all(small) else "**does not agree**" if not any(small) else
            f"cannot tell: the batch sizes it cannot tell apart lie on both sides of {SMALL_BATCH}")
    lines.append(f"- Fewest epochs to target at batch size {few}"
                 + (f" (not told apart from {join_and(sorted(few_tied[1:]))})" if len(few_tied) > 1 else "")
                 + f": Masters & Luschi (2018) found the best results with small mini-batches (2–{SMALL_BATCH}); "
                 f"this run {word}"
                 + ("" if policy == "grid" else " (with eta not tuned per batch size; try `--eta-policy grid`)")
                 + ".")
    return lines


def _noise_lines(results, verdicts, names) -> list:
    """The gradient noise scale along one run, beside the verdict of that run's optimizer."""
    noise = noise_points(results)
    if noise.empty:
        return []
    optimizer = noise["optimizer"].iloc[0]
    verdict = verdicts.get(optimizer, {})
    lines = ["\n### Gradient noise scale\n"]
    lines.append(
        "B_simple = tr(Σ)/‖G‖² (McCandlish et al. 2018), unbiased estimates of both from per-example "
        f"gradients on {fmt(noise['noise_rows'].iloc[0])} training rows, along the run at batch size "
        f"{int(noise['batch_size'].iloc[0])}, seed 0" + (f", {names.get(optimizer, optimizer)}" if len(names) > 1
                                                         else "")
        + ". McCandlish et al. predict the critical batch size is of the order of B_simple.\n")
    lines.append(markdown_table(pd.DataFrame({
        "epoch": noise["epoch"], "steps": noise["steps"], "val accuracy": noise["val_accuracy"],
        "B_simple": noise["noise_scale"], "tr(Σ)": noise["trace_sigma"], "‖G‖²": noise["grad_norm_sq"]})))
    if verdict:
        tied = verdict["fastest_tied"]
        fastest = str(tied[0]) + (f" (not told apart from {join_and(sorted(tied[1:]))})" if len(tied) > 1 else "")
        low, high = verdict["largest_scaling_range"]
        scaling = str(verdict["largest_scaling"]) + ("" if low == high else f" ({low}–{high} within the noise)")
        lines.append(f"\nMeasured{f' with {names.get(optimizer, optimizer)}' if len(names) > 1 else ''}: fastest "
                     f"batch size {fastest}, largest that still scales {scaling}; B_simple "
                     f"ranged {fmt(noise['noise_scale'].min())}–{fmt(noise['noise_scale'].max())} during training.")
    return lines
