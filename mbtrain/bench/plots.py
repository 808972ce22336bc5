"""The PNG plots of a bench or sweep report, drawn from the summaries' DataFrames.

Each figure is a :class:`matplotlib.figure.Figure` on its own Agg canvas, not
a pyplot figure: no global backend is chosen and no figure registry is
touched, so a report can be written from a notebook, a thread or a headless
job without changing how the caller's own plots are shown.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .summaries import scaling_verdict

ARM_COLORS = {"loop": "tab:gray", "numpy": "tab:blue", "numba": "tab:orange", "torch": "tab:red",
              "sklearn": "tab:green"}
DTYPE_STYLES = {"float32": "-", "float64": "--"}
DPI = 120


def _figure(width=7, height=4.5) -> Figure:
    fig = Figure(figsize=(width, height), layout="tight")
    FigureCanvasAgg(fig)  # Agg for this figure only: PNG output without a global backend
    return fig


def _save(fig, path) -> None:
    fig.savefig(path, dpi=DPI)


def _title_of(results, with_target=False) -> str:
    meta = results.iloc[0] if len(results) else pd.Series(dtype=object)
    title = f"sizes {meta.get('sizes', '?')}, {meta.get('dataset', '?')}"
    if with_target:
        target = pd.to_numeric(results["target"], errors="coerce").dropna()
        title += f", target {target.iloc[0]:.3g}" if not target.empty else ""
    return title


# -- bench ------------------------------------------------------------------------------


def plot_bench(summary: pd.DataFrame, results: pd.DataFrame, out) -> list[str]:
    """bench_throughput.png and bench_speedup.png in ``out``; returns their file names."""
    floor = results[results["kind"] == "floor"]
    fig = _figure()
    ax = fig.add_subplot()
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
    ax.set_title(f"SGD epoch throughput, {_title_of(results)}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, out / "bench_throughput.png")

    fig = _figure()
    ax = fig.add_subplot()
    for (arm, dtype), g in summary.groupby(["arm", "dtype"], sort=False):
        g = g.sort_values("batch_size")
        ax.plot(g["batch_size"], g["speedup_over_loop"], DTYPE_STYLES.get(dtype, ":"), marker="o",
                color=ARM_COLORS.get(arm), label=f"{arm} {dtype}")
    ax.axhline(1.0, color="black", lw=0.8)
    if not np.isfinite(summary["speedup_over_loop"].to_numpy(float)).any():
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
    _save(fig, out / "bench_speedup.png")
    return ["bench_throughput.png", "bench_speedup.png"]


# -- sweep ------------------------------------------------------------------------------


def plot_sweep(results: pd.DataFrame, summary: pd.DataFrame, best: pd.DataFrame, noise: pd.DataFrame,
               out) -> list[str]:
    """The sweep's plots in ``out`` (epochs, steps, seconds to target, learning curves, noise scale)."""
    title = _title_of(results, with_target=True)
    names = []
    for column, label, name in (("epochs", "epochs to target", "sweep_epochs_to_target"),
                                ("steps", "SGD steps to target", "sweep_steps_to_target"),
                                ("seconds", "training seconds to target (s)", "sweep_seconds_to_target")):
        fig = _figure()
        ax = fig.add_subplot()
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
        _save(fig, out / f"{name}.png")
        names.append(f"{name}.png")

    names.append(_plot_curves(results, best, title, out))
    if not noise.empty:
        names.append(_plot_noise(noise, best, title, out))
    return names


def _plot_curves(results, best, title, out) -> str:
    curves = results[results["kind"] == "curve"].copy()
    for c in ("batch_size", "eta", "seed", "epoch", "val_accuracy", "train_loss"):
        curves[c] = pd.to_numeric(curves[c], errors="coerce")
    fig = _figure(11, 4.5)
    axes = fig.subplots(1, 2)
    cmap = colormaps["viridis"]
    chosen = list(best[["batch_size", "eta"]].itertuples(index=False))
    for k, (b, eta) in enumerate(chosen):
        g = curves[(curves["batch_size"] == b) & np.isclose(curves["eta"], eta) & (curves["seed"] == 0)]
        color = cmap(k / max(1, len(chosen) - 1))
        axes[0].plot(g["epoch"], g["val_accuracy"], color=color, label=f"b={int(b)}, eta={eta:.3g}")
        axes[1].plot(g["epoch"], g["train_loss"], color=color, label=f"b={int(b)}")
    target = pd.to_numeric(results["target"], errors="coerce").dropna()
    if not target.empty:
        axes[0].axhline(float(target.iloc[0]), color="black", ls=":", lw=1, label="target")
    axes[0].set_ylabel("validation accuracy (fraction)")
    axes[1].set_ylabel("training loss (mean cost per example)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epochs")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Learning curves per batch size, seed 0 ({title})", fontsize=10)
    _save(fig, out / "sweep_learning_curves.png")
    return "sweep_learning_curves.png"


def _plot_noise(noise, best, title, out) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    finite = noise[np.isfinite(noise["noise_scale"].to_numpy(float))]
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
    _save(fig, out / "sweep_noise_scale.png")
    return "sweep_noise_scale.png"
