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

from .results import with_optimizer
from .summaries import optimizer_names, verdicts_by_optimizer

ARM_COLORS = {"loop": "tab:gray", "numpy": "tab:blue", "numba": "tab:orange", "torch": "tab:red",
              "sklearn": "tab:green"}
DTYPE_STYLES = {"float32": "-", "float64": "--"}
DPI = 120


def _figure(width=7, height=4.5) -> Figure:
    # Fixed margins, not layout="tight": measuring every tick label's extent to fit them took
    # more than half of a quick sweep's report (2 of 3.6 s for its five plots).
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.4 / height,
                        wspace=0.25, hspace=0.3)
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
    trained = with_optimizer(results[results["kind"] == "bench"])["optimizer"].dropna()
    name = trained.iloc[0].split("(", 1)[0] if not trained.empty else "sgd"
    ax.set_title(f"{'SGD' if name == 'sgd' else name.capitalize()} epoch throughput, {_title_of(results)}")
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

OVERLAY_PLOT = "sweep_optimizers_steps_to_target.png"  #: steps to target per optimizer (several optimizers only)
OPTIMIZER_COLORS = {"sgd": "tab:blue", "momentum": "tab:orange", "nesterov": "tab:purple", "adam": "tab:green"}


def _colors(optimizers) -> dict:
    """A color per optimizer label: its name's, or the next of the default cycle for another."""
    spare = iter(["tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"])
    taken, colors = set(), {}
    for text in optimizers:
        color = OPTIMIZER_COLORS.get(text.split("(", 1)[0])
        colors[text] = color if color is not None and color not in taken else next(spare, "black")
        taken.add(colors[text])
    return colors


def plot_sweep(results: pd.DataFrame, summary: pd.DataFrame, best: pd.DataFrame, noise: pd.DataFrame,
               out) -> list[str]:
    """The sweep's plots in ``out``: epochs, steps, seconds to target (a line per optimizer), learning curves,
    the noise scale, and with several optimizers :data:`OVERLAY_PLOT`."""
    title = _title_of(results, with_target=True)
    names = optimizer_names(summary["optimizer"])
    colors = _colors(names)
    several = len(names) > 1
    per_optimizer = summary.groupby("optimizer")
    grid = per_optimizer["eta"].nunique().max() > per_optimizer["batch_size"].nunique().max()  # several etas each
    files = []
    for column, label, name in (("epochs", "epochs to target", "sweep_epochs_to_target"),
                                ("steps", "training steps to target", "sweep_steps_to_target"),
                                ("seconds", "training seconds to target (s)", "sweep_seconds_to_target")):
        fig = _figure()
        ax = fig.add_subplot()
        reached_any = best[best["reached"] > 0]
        for optimizer, shown in names.items():
            mine = best[best["optimizer"] == optimizer]
            done = mine[mine["reached"] > 0]
            prefix = f"{shown}: " if several else ""
            if not done.empty or not several:
                ax.errorbar(done["batch_size"], done[column], yerr=done[f"{column}_sd"].fillna(0), marker="o",
                            capsize=3, color=colors[optimizer] if several else None,
                            label=prefix + "mean ± sd over seeds" + (" (best eta)" if grid else ""))
            missed = mine[mine["reached"] == 0]
            if not missed.empty and not reached_any.empty:
                ax.plot(missed["batch_size"], [reached_any[column].max()] * len(missed), "x",
                        color=colors[optimizer] if several else "tab:red", label=prefix + "target not reached")
            if column == "steps" and not done.empty:
                _perfect_scaling(ax, done, colors[optimizer] if several else "gray", prefix)
        if reached_any.empty:
            ax.text(0.5, 0.5, "no batch size reached the target", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel("mini-batch size (examples)")
        ax.set_ylabel(label)
        ax.set_title(f"{label[0].upper() + label[1:]} vs batch size ({title})", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7 if several else 8)
        _save(fig, out / f"{name}.png")
        files.append(f"{name}.png")

    files.append(_plot_curves(results, best, names, title, out))
    if not noise.empty:
        files.append(_plot_noise(noise, best, title, out))
    if several:
        files.append(_plot_overlay(best, names, colors, title, out))
    return files


def _perfect_scaling(ax, done, color, prefix) -> None:
    """Steps that halve as the batch size doubles, from the smallest batch size that reached the target."""
    first = done.iloc[0]
    b = done["batch_size"].to_numpy(float)
    ax.plot(b, first["steps"] * first["batch_size"] / b, ":", color=color, label=prefix + "perfect scaling")


def _plot_overlay(best, names, colors, title, out) -> str:
    """Steps to target against batch size, a line per optimizer, with where each stops scaling."""
    fig = _figure()
    ax = fig.add_subplot()
    verdicts = verdicts_by_optimizer(best)
    absent, labelled = [], False  # one legend entry for the perfect-scaling lines
    for optimizer, shown in names.items():
        mine = best[best["optimizer"] == optimizer]
        done = mine[(mine["reached"] == mine["seeds"]) & (mine["seeds"] > 0)]
        if done.empty:
            absent.append(shown)
            continue
        verdict = verdicts.get(optimizer)
        ax.errorbar(done["batch_size"], done["steps"], yerr=done["steps_sd"].fillna(0), marker="o", capsize=3,
                    color=colors[optimizer],
                    label=f"{shown} (still scales up to {verdict['largest_scaling']})" if verdict else shown)
        _perfect_scaling(ax, done, colors[optimizer], "")
        ax.lines[-1].set_label("_" if labelled else "perfect scaling from each one's smallest batch size")
        labelled = True
        if verdict:  # dashed: the largest batch size that still scales
            ax.axvline(verdict["largest_scaling"], color=colors[optimizer], ls="--", lw=1)
    if len(absent) == len(names):
        ax.text(0.5, 0.5, "no optimizer reached the target with every seed", ha="center", va="center",
                transform=ax.transAxes)
    else:
        ax.set_yscale("log")
        if absent:
            ax.text(0.02, 0.02, f"not shown, no batch size with every seed at the target: {', '.join(absent)}",
                    fontsize=7, transform=ax.transAxes)
    ax.set_xscale("log")
    ax.set_xlabel("mini-batch size (examples); dashed: the largest that still scales, per optimizer")
    ax.set_ylabel("training steps to target (mean ± sd, best eta)")
    ax.set_title(f"Steps to target per optimizer ({title})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    _save(fig, out / OVERLAY_PLOT)
    return OVERLAY_PLOT


def _plot_curves(results, best, names, title, out) -> str:
    """Validation accuracy and training loss along seed 0's run at each batch size: a row per optimizer."""
    curves = with_optimizer(results[results["kind"] == "curve"])
    for c in ("batch_size", "eta", "seed", "epoch", "val_accuracy", "train_loss"):
        curves[c] = pd.to_numeric(curves[c], errors="coerce")
    fig = _figure(11, 4.5 * len(names))
    axes = fig.subplots(len(names), 2, squeeze=False)
    cmap = colormaps["viridis"]
    target = pd.to_numeric(results["target"], errors="coerce").dropna()
    for row, (optimizer, shown) in zip(axes, names.items()):
        chosen = list(best.loc[best["optimizer"] == optimizer, ["batch_size", "eta"]].itertuples(index=False))
        mine = curves[(curves["optimizer"] == optimizer) & (curves["seed"] == 0)]
        for k, (b, eta) in enumerate(chosen):
            g = mine[(mine["batch_size"] == b) & np.isclose(mine["eta"], eta)]
            color = cmap(k / max(1, len(chosen) - 1))
            row[0].plot(g["epoch"], g["val_accuracy"], color=color, label=f"b={int(b)}, eta={eta:.3g}")
            row[1].plot(g["epoch"], g["train_loss"], color=color, label=f"b={int(b)}")
        if not target.empty:
            row[0].axhline(float(target.iloc[0]), color="black", ls=":", lw=1, label="target")
        which = f" ({shown})" if len(names) > 1 else ""
        row[0].set_ylabel(f"validation accuracy (fraction){which}")
        row[1].set_ylabel(f"training loss (mean cost per example){which}")
        row[1].set_yscale("log")
        for ax in row:
            ax.set_xlabel("epochs")
            ax.grid(True, alpha=0.3)
        row[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Learning curves per batch size, seed 0 ({title})", fontsize=10)
    _save(fig, out / "sweep_learning_curves.png")
    return "sweep_learning_curves.png"


def _plot_noise(noise, best, title, out) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    finite = noise[np.isfinite(noise["noise_scale"].to_numpy(float))]
    ax.plot(finite["steps"].clip(lower=1), finite["noise_scale"].clip(lower=1e-3), marker="o",
            label="B_simple = tr(Σ)/‖G‖²")
    verdict = verdicts_by_optimizer(best).get(noise["optimizer"].iloc[0]) if len(noise) else None
    if verdict:
        ax.axhline(verdict["fastest"], color="tab:orange", ls="--", label=f"fastest batch size ({verdict['fastest']})")
        ax.axhline(verdict["largest_scaling"], color="tab:green", ls=":",
                   label=f"largest batch size that scales ({verdict['largest_scaling']})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training steps taken (at the noise batch size; step 0 plotted at 1)")
    ax.set_ylabel("gradient noise scale (examples)")
    ax.set_title(f"Gradient noise scale during training ({title})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, out / "sweep_noise_scale.png")
    return "sweep_noise_scale.png"
