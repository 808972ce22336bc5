"""report.md and the plots of a result folder, rebuilt from results.csv and machine.json alone.

``write_report(folder)`` is what every run calls at its end and what
``mbtrain report DIR`` calls later: the same inputs give the same Markdown.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .machine import read_machine
from .results import read_results

SMALL_BATCH = 32  # Masters & Luschi (2018): best results with mini-batches of 2 to 32


# -- formatting ------------------------------------------------------------------------


def fmt(value, digits=3) -> str:
    """A number with ``digits`` significant digits ("" for missing, thousands kept whole)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10 ** digits else str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 10 ** digits else str(int(value))
        if abs(value) >= 10 ** digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def mean_sd(values, digits=3) -> str:
    """``"mean ± sd"`` of the non-missing values ("" when there are none; no sd for one)."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return fmt(float(values.iloc[0]), digits)
    return f"{fmt(float(values.mean()), digits)} ± {fmt(float(values.std(ddof=1)), 2)}"


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``frame`` (cells formatted with :func:`fmt`; numbers right-aligned)."""
    if frame.empty:
        return "_(no rows)_\n"
    header = "| " + " | ".join(str(c).replace("|", "\\|") for c in frame.columns) + " |"
    aligns = []
    for c in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        aligns.append("---:" if numeric else ":---")
    lines = [header, "| " + " | ".join(aligns) + " |"]
    for row in frame.itertuples(index=False):
        cells = [fmt(v).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- bench ------------------------------------------------------------------------------


def bench_summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per arm, dtype and batch size: median and spread of the timed epochs, speedup, floor."""
    bench = results[results["kind"] == "bench"].copy()
    if bench.empty:
        return pd.DataFrame()
    for c in ("epoch_seconds", "rows", "rows_timed", "floor_seconds", "compile_seconds", "warmup_seconds"):
        bench[c] = pd.to_numeric(bench[c], errors="coerce")
    keys = ["arm", "arm_kind", "loss", "dtype", "batch_size"]
    grouped = bench.groupby(keys, sort=False)
    summary = grouped.agg(
        repeats=("epoch_seconds", "size"),
        compile_seconds=("compile_seconds", "first"),
        median_seconds=("epoch_seconds", "median"),
        min_seconds=("epoch_seconds", "min"),
        max_seconds=("epoch_seconds", "max"),
        q1=("epoch_seconds", lambda s: s.quantile(0.25)),
        q3=("epoch_seconds", lambda s: s.quantile(0.75)),
        rows=("rows", "first"),
        rows_timed=("rows_timed", "first"),
        floor_seconds=("floor_seconds", "first"),
        floor_bound=("floor_bound", "first"),
    ).reset_index()
    summary["examples_per_second"] = summary["rows"] / summary["median_seconds"]
    loop = summary[summary["arm"] == "loop"].set_index(["dtype", "batch_size"])["median_seconds"]
    summary["speedup_over_loop"] = [
        loop.get((d, b), np.nan) / s for d, b, s in zip(summary["dtype"], summary["batch_size"], summary["median_seconds"])]
    summary["times_floor"] = summary["median_seconds"] / summary["floor_seconds"]
    return summary


def _bench_sections(results, machine, out, lines):
    floor = results[results["kind"] == "floor"]
    checks = results[results["kind"] == "check"]
    summary = bench_summary(results)
    settings = machine.get("settings", {})

    if not floor.empty:
        lines.append("## Hardware floor (measured in this run)\n")
        table = pd.DataFrame({
            "dtype": floor["dtype"],
            "GEMM GFLOP/s": floor["gemm_flops_per_second"].astype(float) / 1e9,
            "bandwidth GB/s": floor["bandwidth_bytes_per_second"].astype(float) / 1e9,
            "epoch GFLOP": floor["epoch_flops"].astype(float) / 1e9,
            "epoch MB read": floor["epoch_bytes"].astype(float) / 1e6,
            "compute floor s": floor["compute_floor_seconds"].astype(float),
            "memory floor s": floor["memory_floor_seconds"].astype(float),
            "floor s": floor["floor_seconds"].astype(float),
            "bound": floor["floor_bound"],
        })
        lines.append(markdown_table(table))
        lines.append(
            "\nFLOPs of an epoch: forward 2·n·Σ n_in·n_out, weight gradients the same, hidden deltas "
            "2·n·Σ_{l≥1} n_in·n_out (element-wise work not counted); bytes: the inputs, read twice. "
            "The GEMM rate is a large square matrix product with numpy's BLAS at the benchmark's thread "
            "count; the bandwidth is a single-threaded reduction over an array far larger than the caches.\n")
        for r in floor.itertuples():
            lines.append(f"- **{r.dtype}: {r.floor_bound}-bound** — the epoch's FLOPs at the GEMM rate take "
                         f"{fmt(float(r.compute_floor_seconds))} s, reading its inputs "
                         f"{fmt(float(r.memory_floor_seconds))} s.")
        lines.append("")

    if not checks.empty:
        lines.append("## Correctness check before timing\n")
        lines.append(f"Each arm takes one SGD step on one mini-batch of {32} rows from the shared initial "
                     "weights; its update is compared with the `loop` reference (float64, same loss): "
                     "relative error ‖u − u_ref‖ / ‖u_ref‖. Arms over the tolerance are **wrong** and not timed.\n")
        table = checks[["arm", "arm_kind", "loss", "dtype", "check_error", "check_tolerance", "status", "note"]].copy()
        table["note"] = table["note"].fillna("")
        table.columns = ["arm", "kind", "loss trained", "dtype", "relative error", "tolerance", "status", "note"]
        lines.append(markdown_table(table))
        wrong = checks[checks["status"] == "wrong"]
        for r in wrong.itertuples():
            lines.append(f"- **{r.arm} ({r.dtype}) is WRONG**: {r.note if isinstance(r.note, str) else ''}")
        skipped = checks[checks["status"] == "unavailable"]
        for r in skipped.drop_duplicates("arm").itertuples():
            lines.append(f"- {r.arm} skipped: {r.note}")
        lines.append("")

    if summary.empty:
        return
    lines.append("## Throughput\n")
    table = pd.DataFrame({
        "arm": summary["arm"], "kind": summary["arm_kind"], "dtype": summary["dtype"],
        "batch size": summary["batch_size"].astype(int), "compile s": summary["compile_seconds"],
        "median epoch s": summary["median_seconds"],
        "spread s (min–max)": [f"{fmt(a)}–{fmt(b)}" for a, b in zip(summary["min_seconds"], summary["max_seconds"])],
        "examples/s": summary["examples_per_second"],
        "speedup over loop": summary["speedup_over_loop"],
        "× floor": summary["times_floor"],
        "rows timed": [f"{int(t)}" + ("" if t == r else f" of {int(r)}") for t, r in
                       zip(summary["rows_timed"], summary["rows"])],
    })
    lines.append(markdown_table(table))
    repeats = int(summary["repeats"].max())
    lines.append(
        f"\nMedian of {repeats} timed epochs after one warm-up (compile time reported apart, not included); "
        "every epoch starts from the same initial weights and runs the same batch order. "
        "`× floor` is the median epoch time over the hardware floor (1 = at the floor). "
        "Speedup is over `loop` at the same batch size and dtype.")
    scaled = summary[summary["rows_timed"] < summary["rows"]]
    if not scaled.empty:
        arms = ", ".join(sorted(set(scaled["arm"])))
        lines.append(f"Arms slower than {fmt(settings.get('max_epoch_seconds', float('nan')))} s per epoch "
                     f"({arms}) were timed on the first rows of the shuffled order (whole mini-batches) and "
                     "scaled to the full epoch; `rows timed` says how many.")
    peers = summary[summary["arm_kind"] == "peer"].drop_duplicates("arm")
    arm_info = machine.get("arms", {})
    for r in peers.itertuples():
        lines.append(f"- Peer **{r.arm}** (not mbtrain; trains loss `{r.loss}`): "
                     f"{arm_info.get(r.arm, {}).get('description', '')}")
    lines.append("")
    best = summary.loc[summary.groupby(["dtype", "batch_size"])["median_seconds"].idxmin()]
    lines.append("Fastest arm per batch size: " + "; ".join(
        f"{r.dtype} b={int(r.batch_size)}: {r.arm} ({fmt(r.examples_per_second)} ex/s, "
        f"{fmt(r.times_floor)}× floor)" for r in best.itertuples()) + ".\n")
    _plot_throughput(summary, results, out)
    lines.append("![examples per second](bench_throughput.png)\n")
    lines.append("![speedup over loop](bench_speedup.png)\n")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


ARM_COLORS = {"loop": "tab:gray", "numpy": "tab:blue", "numba": "tab:orange", "torch": "tab:red",
              "sklearn": "tab:green"}
DTYPE_STYLES = {"float32": "-", "float64": "--"}


def _plot_throughput(summary, results, out):
    plt = _plt()
    floor = results[results["kind"] == "floor"]
    meta = results.iloc[0]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (arm, dtype), g in summary.groupby(["arm", "dtype"], sort=False):
        g = g.sort_values("batch_size")
        ax.plot(g["batch_size"], g["examples_per_second"], DTYPE_STYLES.get(dtype, ":"), marker="o",
                color=ARM_COLORS.get(arm), label=f"{arm} {dtype}")
    for r in floor.itertuples():
        ax.axhline(float(r.rows) / float(r.floor_seconds), color="black", lw=1, ls=DTYPE_STYLES.get(r.dtype, ":"),
                   label=f"hardware floor {r.dtype} ({r.floor_bound}-bound)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mini-batch size (examples)")
    ax.set_ylabel("training throughput (examples/s)")
    ax.set_title(f"SGD epoch throughput, sizes {meta['sizes']}, {meta['dataset']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "bench_throughput.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (arm, dtype), g in summary.groupby(["arm", "dtype"], sort=False):
        g = g.sort_values("batch_size")
        ax.plot(g["batch_size"], g["speedup_over_loop"], DTYPE_STYLES.get(dtype, ":"), marker="o",
                color=ARM_COLORS.get(arm), label=f"{arm} {dtype}")
    ax.axhline(1.0, color="black", lw=0.8)
    if not np.isfinite(summary["speedup_over_loop"]).any():
        ax.text(0.5, 0.5, "the loop arm was not timed: no speedup to show", ha="center", va="center",
                transform=ax.transAxes)
    else:
        ax.set_yscale("log")
        ax.set_xscale("log")
    ax.set_xlabel("mini-batch size (examples)")
    ax.set_ylabel("speedup over the per-example loop (×)")
    ax.set_title("Speedup over the loop reference at the same batch size and dtype")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "bench_speedup.png", dpi=120)
    plt.close(fig)


# -- sweep ------------------------------------------------------------------------------


def sweep_summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per batch size and eta: seeds that reached the target, means and spreads."""
    runs = results[results["kind"] == "sweep"].copy()
    if runs.empty:
        return pd.DataFrame()
    numeric = ["batch_size", "eta", "epochs_to_target", "steps_to_target", "seconds_to_target",
               "examples_to_target", "best_val_accuracy", "final_train_loss", "final_val_loss", "seconds"]
    for c in numeric:
        runs[c] = pd.to_numeric(runs[c], errors="coerce")
    runs["reached"] = runs["status"] == "reached"
    rows = []
    for (b, eta), g in runs.groupby(["batch_size", "eta"], sort=True):
        rows.append({
            "batch_size": int(b), "eta": eta, "seeds": len(g), "reached": int(g["reached"].sum()),
            "diverged": int((g["status"] == "diverged").sum()),
            "epochs": g["epochs_to_target"].mean(), "epochs_sd": g["epochs_to_target"].std(ddof=1),
            "steps": g["steps_to_target"].mean(), "steps_sd": g["steps_to_target"].std(ddof=1),
            "seconds": g["seconds_to_target"].mean(), "seconds_sd": g["seconds_to_target"].std(ddof=1),
            "examples": g["examples_to_target"].mean(),
            "epochs_txt": mean_sd(g["epochs_to_target"]), "steps_txt": mean_sd(g["steps_to_target"]),
            "seconds_txt": mean_sd(g["seconds_to_target"]),
            "best_val_accuracy": g["best_val_accuracy"].mean(),
            "final_train_loss": g["final_train_loss"].mean(), "final_val_loss": g["final_val_loss"].mean(),
        })
    return pd.DataFrame(rows)


def best_per_batch_size(summary: pd.DataFrame) -> pd.DataFrame:
    """Per batch size, the eta with the fewest mean seconds to target among those where every seed got
    there (else the highest mean best validation accuracy)."""
    picks = []
    for b, g in summary.groupby("batch_size", sort=True):
        full = g[g["reached"] == g["seeds"]]
        picks.append(full.loc[full["seconds"].idxmin()] if not full.empty
                     else g.loc[g["best_val_accuracy"].idxmax()])
    return pd.DataFrame(picks).reset_index(drop=True)


def scaling_verdict(best: pd.DataFrame) -> dict:
    """Fastest batch size, fewest epochs, and the largest batch size that still scales.

    "Still scales": examples to target at most twice the minimum over batch
    sizes, i.e. steps still drop at least half-proportionally with the batch
    size (McCandlish et al.'s critical batch size, E = 2 E_min, measured).
    """
    done = best[best["reached"] == best["seeds"]]
    if done.empty:
        return {}
    e_min = done["examples"].min()
    scaling = done[done["examples"] <= 2 * e_min]
    return {
        "fastest": int(done.loc[done["seconds"].idxmin(), "batch_size"]),
        "fewest_epochs": int(done.loc[done["epochs"].idxmin(), "batch_size"]),
        "largest_scaling": int(scaling["batch_size"].max()),
        "examples_min": float(e_min),
    }


def _sweep_sections(results, machine, out, lines):
    summary = sweep_summary(results)
    if summary.empty:
        return
    settings = machine.get("settings", {})
    target = settings.get("target", results["target"].dropna().iloc[0] if results["target"].notna().any() else None)
    policy = settings.get("eta_policy", "fixed")
    lines.append("## Time to target accuracy across batch sizes\n")
    lines.append(
        f"Target validation accuracy {fmt(target)} within {settings.get('max_epochs', '?')} epochs; "
        f"{settings.get('seeds', '?')} seeds (seed s fixes the initial weights, the same for every batch size, "
        f"and the shuffle order); eta policy **{policy}**"
        + (f" (reference batch size {settings.get('ref_batch_size')}, base eta {fmt(settings.get('eta'))})"
           if policy != "fixed" else f" (eta {fmt(settings.get('eta'))})")
        + f"; backend {settings.get('backend', 'numba')}, dtype {settings.get('dtype', '')}. "
        f"Accuracy is evaluated {settings.get('evals_per_epoch', 4)} times per epoch; seconds are SGD time only. "
        "Mean ± standard deviation over the seeds that reached the target.\n")
    table = pd.DataFrame({
        "batch size": summary["batch_size"], "eta": summary["eta"],
        "reached": [f"{r}/{s}" + (f" ({d} diverged)" if d else "") for r, s, d in
                    zip(summary["reached"], summary["seeds"], summary["diverged"])],
        "epochs to target": summary["epochs_txt"], "steps to target": summary["steps_txt"],
        "seconds to target": summary["seconds_txt"], "best val acc": summary["best_val_accuracy"],
        "final train loss": summary["final_train_loss"], "final val loss": summary["final_val_loss"],
    })
    lines.append(markdown_table(table))
    best = best_per_batch_size(summary)
    if policy == "grid":
        lines.append("\n### Best eta per batch size (grid)\n")
        bands = []
        for b, g in summary.groupby("batch_size", sort=True):
            ok = g[g["reached"] == g["seeds"]]["eta"]
            bands.append(f"{fmt(ok.min())}–{fmt(ok.max())}" if not ok.empty else "none")
        lines.append(markdown_table(pd.DataFrame({
            "batch size": best["batch_size"], "best eta": best["eta"], "seconds to target": best["seconds_txt"],
            "epochs to target": best["epochs_txt"], "etas reaching target (all seeds)": bands})))
    verdict = scaling_verdict(best)
    lines.append("\n### Verdict\n")
    if not verdict:
        lines.append("No batch size reached the target with every seed: raise `--max-epochs`, lower `--target` "
                     "or change eta.\n")
    else:
        lines.append(f"- **Fastest to target: batch size {verdict['fastest']}** (least SGD time).")
        lines.append(f"- **Largest batch size that still scales: {verdict['largest_scaling']}** — the largest "
                     "whose examples-to-target stay within 2× of the minimum "
                     f"({fmt(verdict['examples_min'])} examples), i.e. steps-to-target still drop at least "
                     "half-proportionally (McCandlish et al.'s critical batch size, measured).")
        agree = verdict["fewest_epochs"] <= SMALL_BATCH
        lines.append(f"- Fewest epochs to target at batch size {verdict['fewest_epochs']}: Masters & Luschi "
                     f"(2018) found the best results with small mini-batches (2–{SMALL_BATCH}); this run "
                     f"**{'agrees' if agree else 'does not agree'}**"
                     + ("" if policy == "grid" else " (with eta not tuned per batch size; try `--eta-policy grid`)")
                     + ".")
    noise = results[results["kind"] == "noise"].copy()
    if not noise.empty:
        for c in ("epoch", "steps", "val_accuracy", "noise_scale", "trace_sigma", "grad_norm_sq", "noise_rows"):
            noise[c] = pd.to_numeric(noise[c], errors="coerce")
        lines.append("\n### Gradient noise scale\n")
        lines.append(
            "B_simple = tr(Σ)/‖G‖² (McCandlish et al. 2018), unbiased estimates of both from per-example "
            f"gradients on {fmt(noise['noise_rows'].iloc[0])} training rows, along the run at batch size "
            f"{int(noise['batch_size'].iloc[0])}, seed 0. McCandlish et al. predict the critical batch size is "
            "of the order of B_simple.\n")
        lines.append(markdown_table(pd.DataFrame({
            "epoch": noise["epoch"], "steps": noise["steps"], "val accuracy": noise["val_accuracy"],
            "B_simple": noise["noise_scale"], "tr(Σ)": noise["trace_sigma"], "‖G‖²": noise["grad_norm_sq"]})))
        if verdict:
            lines.append(f"\nMeasured: fastest batch size {verdict['fastest']}, largest that still scales "
                         f"{verdict['largest_scaling']}; B_simple ranged "
                         f"{fmt(noise['noise_scale'].min())}–{fmt(noise['noise_scale'].max())} during training.")
    lines.append("")
    _plot_sweep(results, summary, best, noise, out)
    for name, alt in (("sweep_epochs_to_target", "epochs to target"), ("sweep_steps_to_target", "steps to target"),
                      ("sweep_seconds_to_target", "seconds to target"), ("sweep_learning_curves", "learning curves")):
        lines.append(f"![{alt}]({name}.png)\n")
    if not noise.empty:
        lines.append("![gradient noise scale](sweep_noise_scale.png)\n")


def _plot_sweep(results, summary, best, noise, out):
    plt = _plt()
    meta = results.iloc[0]
    title = f"sizes {meta['sizes']}, {meta['dataset']}, target {fmt(meta['target'])}"
    for column, label, name in (("epochs", "epochs to target", "sweep_epochs_to_target"),
                                ("steps", "SGD steps to target", "sweep_steps_to_target"),
                                ("seconds", "training seconds to target (s)", "sweep_seconds_to_target")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        done = best[best["reached"] > 0]
        ax.errorbar(done["batch_size"], done[column], yerr=done[f"{column}_sd"].fillna(0), marker="o",
                    capsize=3, label="mean ± sd over seeds" + (" (best eta)" if summary["eta"].nunique() >
                                                                  summary["batch_size"].nunique() else ""))
        missed = best[best["reached"] == 0]
        if not missed.empty and not done.empty:
            ax.plot(missed["batch_size"], [done[column].max()] * len(missed), "x", color="tab:red",
                    label="target not reached")
        if column == "steps" and not done.empty:
            first = done.iloc[0]
            b = done["batch_size"].to_numpy(float)
            ax.plot(b, first["steps"] * first["batch_size"] / b, ":", color="gray", label="perfect scaling")
        if done.empty:
            ax.text(0.5, 0.5, "no batch size reached the target", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel("mini-batch size (examples)")
        ax.set_ylabel(label)
        ax.set_title(f"{label[0].upper() + label[1:]} vs batch size ({title})", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=120)
        plt.close(fig)

    curves = results[results["kind"] == "curve"].copy()
    for c in ("batch_size", "eta", "seed", "epoch", "val_accuracy", "train_loss"):
        curves[c] = pd.to_numeric(curves[c], errors="coerce")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    cmap = plt.get_cmap("viridis")
    chosen = best[["batch_size", "eta"]].itertuples(index=False)
    chosen = list(chosen)
    for k, (b, eta) in enumerate(chosen):
        g = curves[(curves["batch_size"] == b) & np.isclose(curves["eta"], eta) & (curves["seed"] == 0)]
        color = cmap(k / max(1, len(chosen) - 1))
        axes[0].plot(g["epoch"], g["val_accuracy"], color=color, label=f"b={int(b)}, eta={fmt(eta)}")
        axes[1].plot(g["epoch"], g["train_loss"], color=color, label=f"b={int(b)}")
    axes[0].axhline(float(meta["target"]), color="black", ls=":", lw=1, label="target")
    axes[0].set_ylabel("validation accuracy (fraction)")
    axes[1].set_ylabel("training loss (mean cost per example)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epochs")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Learning curves per batch size, seed 0 ({title})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "sweep_learning_curves.png", dpi=120)
    plt.close(fig)

    if not noise.empty:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        finite = noise[np.isfinite(noise["noise_scale"])]
        ax.plot(finite["steps"].clip(lower=1), finite["noise_scale"].clip(lower=1e-3), marker="o",
                label="B_simple = tr(Σ)/‖G‖²")
        verdict = scaling_verdict(best)
        if verdict:
            ax.axhline(verdict["fastest"], color="tab:orange", ls="--", label=f"fastest batch size ({verdict['fastest']})")
            ax.axhline(verdict["largest_scaling"], color="tab:green", ls=":",
                       label=f"largest batch size that scales ({verdict['largest_scaling']})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("SGD steps taken (at the noise batch size; step 0 plotted at 1)")
        ax.set_ylabel("gradient noise scale (examples)")
        ax.set_title(f"Gradient noise scale during training ({title})", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "sweep_noise_scale.png", dpi=120)
        plt.close(fig)


# -- compare ----------------------------------------------------------------------------


def compare_sections(results, other, other_name, lines):
    """Ratios of this folder's results over ``other``'s, per arm/dtype/batch size and per batch size."""
    lines.append(f"## Comparison with `{other_name}`\n")
    mine, theirs = bench_summary(results), bench_summary(other)
    if not mine.empty and not theirs.empty:
        keys = ["arm", "dtype", "batch_size"]
        both = mine.merge(theirs, on=keys, suffixes=("", "_other"))
        lines.append("Throughput: ratio > 1 means this run is faster.\n")
        lines.append(markdown_table(pd.DataFrame({
            "arm": both["arm"], "dtype": both["dtype"], "batch size": both["batch_size"].astype(int),
            "examples/s": both["examples_per_second"], "examples/s other": both["examples_per_second_other"],
            "ratio": both["examples_per_second"] / both["examples_per_second_other"]})))
    mine, theirs = sweep_summary(results), sweep_summary(other)
    if not mine.empty and not theirs.empty:
        a, b = best_per_batch_size(mine), best_per_batch_size(theirs)
        both = a.merge(b, on="batch_size", suffixes=("", "_other"))
        lines.append("\nTime to target: ratio < 1 means this run got there in less time / fewer epochs.\n")
        lines.append(markdown_table(pd.DataFrame({
            "batch size": both["batch_size"], "seconds": both["seconds"], "seconds other": both["seconds_other"],
            "seconds ratio": both["seconds"] / both["seconds_other"], "epochs": both["epochs"],
            "epochs other": both["epochs_other"], "epochs ratio": both["epochs"] / both["epochs_other"]})))
    lines.append("")


# -- the report -------------------------------------------------------------------------


def execution_note(results: pd.DataFrame, machine: dict) -> str:
    """How the numbers were taken: serially, or N runs at once (whose seconds then share the cores)."""
    ways = results[["executor", "jobs"]].dropna().drop_duplicates() if "executor" in results else pd.DataFrame()
    if ways.empty:
        execution = machine.get("execution") or {"executor": "serial", "jobs": 1}
        ways = pd.DataFrame([execution])[["executor", "jobs"]]
    parts = []
    for executor, jobs in ways.itertuples(index=False):
        if executor == "serial":
            parts.append("serially, one measurement at a time in one process")
        else:
            count = "as many as the workers take" if str(jobs) == "-1" else f"{jobs} at once"
            parts.append(f"in parallel ({executor}, {count}): seconds are wall time while other runs shared the "
                         "machine, comparable with each other but not with serial timings")
    return "; and ".join(parts)


def render_report(folder, compare=None) -> str:
    """The Markdown report of ``folder`` (and writes its plots there)."""
    folder = Path(folder)
    results = read_results(folder)
    machine = read_machine(folder)
    kinds = set(results["kind"].dropna())
    run = machine.get("run") or ("sweep" if "sweep" in kinds else "bench")
    lines = [f"# mbtrain {run}: {machine.get('dataset', results['dataset'].iloc[0] if len(results) else '')}\n"]
    if machine.get("interrupted"):
        lines.append("> **Interrupted** (Ctrl-C or SIGTERM): this report covers only what was measured before the interruption.\n")
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
    lines.append("- measured: " + execution_note(results, machine))
    for earlier in machine.get("resumed_from", []):
        lines.append(f"- resumed a run started {earlier.get('timestamp', '?')} (`{earlier.get('command', '?')}`); "
                     "its finished measurements were kept, not repeated")
    lines.append("")
    lines.append("## Machine\n")
    versions = machine.get("versions", {})
    threads = machine.get("threads", {})
    lines.append(f"- CPU: {machine.get('cpu_model', '?')}, {machine.get('available_cores', '?')} cores available "
                 f"({machine.get('logical_cpus', '?')} logical CPUs)")
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    for pool in machine.get("blas", []):
        lines.append(f"- BLAS: {pool.get('internal_api', '?')} {pool.get('version', '')} "
                     f"({pool.get('threading_layer', '')}, {pool.get('architecture', '')})")
    if threads:
        lines.append("- threads (set for every arm alike): " + ", ".join(f"{k} {v}" for k, v in threads.items()))
    lines.append("")
    if "bench" in kinds or "floor" in kinds or "check" in kinds:
        _bench_sections(results, machine, folder, lines)
    if "sweep" in kinds:
        _sweep_sections(results, machine, folder, lines)
    if compare is not None:
        compare = Path(compare)
        compare_sections(results, read_results(compare), compare.name, lines)
    return "\n".join(lines).rstrip() + "\n"


def write_report(folder, compare=None, partial: bool = False) -> Path:
    """Write ``folder/report.md`` and the plots from results.csv and machine.json; returns the report's path.

    ``partial``: the run was interrupted while its report was being written; this one says so.
    """
    folder = Path(folder)
    text = render_report(folder, compare=compare)
    if partial:
        title, _, rest = text.partition("\n")
        text = (f"{title}\n> **Partial report**: interrupted before the report was complete; written from what "
                f"was measured (`mbtrain report {folder}` rebuilds it).\n{rest}")
    path = folder / "report.md"
    path.write_text(text, encoding="utf-8")
    return path
