"""The numbers behind a report: pure functions from results.csv (and machine.json) to DataFrames.

Nothing here formats text or draws; :mod:`~mbtrain.bench.markdown` and
:mod:`~mbtrain.bench.plots` present what these functions compute, so every
figure and verdict of a report can be tested on a hand-made results table.

Three questions a verdict must answer before it is stated in bold:

- *what was measured*, against what the run planned (machine.json's
  ``settings``): :func:`bench_coverage`, :func:`sweep_coverage`;
- *which differences are larger than the noise*: :func:`seed_interval` gives
  each batch size an interval over its seeds, and :func:`leaders` names the
  batch sizes whose intervals overlap the best one's (they are not told apart);
- *how the figures were taken* (serially or N at once): :func:`execution`.

A sweep may hold several optimizers (results.csv's ``optimizer`` column, a
label such as ``"adam(beta1=0.9, beta2=0.999, eps=1e-08)"``; a folder written
before that column trained plain SGD): every sweep table has an ``optimizer``
column, each optimizer gets its own :func:`scaling_verdict`
(:func:`verdicts_by_optimizer`), and :func:`zhang_comparison` sets each
optimizer's largest batch size that still scales beside plain SGD's.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..optim import label
from .results import SGD_LABEL, with_optimizer

SMALL_BATCH = 32  # Masters & Luschi (2018): best results with mini-batches of 2 to 32
FEW_SEEDS = 4  # up to this many seeds an interval is their min-max; beyond, mean +- 2 standard errors
SWEEP_METRICS = ("epochs", "steps", "seconds", "examples")
OVERLAP_REASON = "the seed intervals of the two overlap"  #: zhang_comparison's reason when only the noise decides


# -- bench ------------------------------------------------------------------------------


def bench_summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per arm, dtype and batch size: median and spread of the timed epochs, speedup, floor."""
    bench = results[results["kind"] == "bench"].copy()
    if bench.empty:
        return pd.DataFrame()
    for c in ("epoch_seconds", "rows", "rows_timed", "floor_seconds", "compile_seconds", "warmup_seconds"):
        bench[c] = pd.to_numeric(bench[c], errors="coerce")
    keys = ["arm", "arm_kind", "loss", "dtype", "batch_size"]
    summary = bench.groupby(keys, sort=False).agg(
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


def fastest_arms(summary: pd.DataFrame) -> pd.DataFrame:
    """Per dtype and batch size, the arm with the least median epoch time, and the arms within its spread.

    Columns: ``dtype``, ``batch_size``, ``arm``, ``examples_per_second``,
    ``times_floor``, ``within_spread`` (a list of the other arms whose min-max
    epoch times overlap the fastest one's: the timings do not tell them apart).
    """
    rows = []
    for (dtype, b), g in summary.groupby(["dtype", "batch_size"], sort=False):
        best = g.loc[g["median_seconds"].idxmin()]
        close = g[(g["arm"] != best["arm"]) & (g["min_seconds"] <= best["max_seconds"])]
        rows.append({"dtype": dtype, "batch_size": int(b), "arm": best["arm"],
                     "examples_per_second": best["examples_per_second"], "times_floor": best["times_floor"],
                     "within_spread": list(close["arm"])})
    return pd.DataFrame(rows, columns=["dtype", "batch_size", "arm", "examples_per_second", "times_floor",
                                       "within_spread"])


def bench_coverage(results: pd.DataFrame, machine: dict) -> pd.DataFrame:
    """What the bench planned (machine.json ``settings``) against what results.csv holds.

    One row per arm, dtype and batch size: ``planned`` and ``timed`` epochs and
    the arm's ``status`` (its check: ``ok``, ``wrong``, ``unavailable``, or
    ``not checked`` when the run stopped before it). A wrong or unavailable arm
    is not timed by design; its rows have ``planned`` 0. Without settings the
    plan is what the rows show (``planned`` = the most repeats of any row).
    """
    settings = machine.get("settings", {})
    bench = results[results["kind"] == "bench"]
    checks = results[results["kind"] == "check"]
    n = _first_number(results["rows"])
    repeats = settings.get("repeats")
    if settings.get("batch_sizes") is not None:
        batch_sizes = [int(min(b, n)) if n else int(b) for b in settings["batch_sizes"]]
    else:
        batch_sizes = sorted(set(pd.to_numeric(bench["batch_size"]).dropna().astype(int)))
    arms = settings.get("arms") or list(dict.fromkeys(list(checks["arm"].dropna()) + list(bench["arm"].dropna())))
    dtypes = settings.get("dtypes") or list(dict.fromkeys(results["dtype"].dropna()))
    timed = bench.groupby(["arm", "dtype", pd.to_numeric(bench["batch_size"]).astype(int)]).size() \
        if not bench.empty else pd.Series(dtype=int)
    if repeats is None:
        repeats = int(timed.max()) if len(timed) else 0
    status = {(r.arm, r.dtype): r.status for r in checks.itertuples()}
    rows = []
    for arm in arms:
        for dtype in dtypes:
            state = status.get((arm, dtype), "not checked")
            for b in batch_sizes:
                rows.append({"arm": arm, "dtype": dtype, "batch_size": b, "status": state,
                             "planned": 0 if state in ("wrong", "unavailable") else int(repeats),
                             "timed": int(timed.get((arm, dtype, b), 0))})
    return pd.DataFrame(rows, columns=["arm", "dtype", "batch_size", "status", "planned", "timed"])


def missing_floors(results: pd.DataFrame, machine: dict) -> list:
    """The dtypes the bench planned whose hardware floor is not in results.csv."""
    planned = machine.get("settings", {}).get("dtypes") or []
    measured = set(results.loc[results["kind"] == "floor", "dtype"].dropna())
    return [d for d in planned if d not in measured]


# -- sweep ------------------------------------------------------------------------------


def seed_interval(values) -> tuple:
    """``(low, high)`` of the non-missing ``values`` (one per seed): the noise a difference must beat.

    Up to :data:`FEW_SEEDS` values the interval is their min-max (a standard
    error from 2-4 seeds is itself too noisy to trust); beyond, mean ± 2
    standard errors. One value gives a point: no spread to judge a difference by.
    """
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(float)
    if values.size == 0:
        return (math.nan, math.nan)
    if values.size <= FEW_SEEDS:
        return (float(values.min()), float(values.max()))
    half = 2 * float(values.std(ddof=1)) / math.sqrt(values.size)
    return (float(values.mean()) - half, float(values.mean()) + half)


def interval_name(seeds: int) -> str:
    """What :func:`seed_interval` computes for ``seeds`` values, for the report's text."""
    if seeds <= 1:
        return "one seed: no spread"
    return "min–max over the seeds" if seeds <= FEW_SEEDS else "mean ± 2 standard errors over the seeds"


def sweep_summary(results: pd.DataFrame, machine: dict | None = None) -> pd.DataFrame:
    """One row per optimizer, batch size and eta: runs finished, how many reached the target, means, spreads.

    Optimizers in the order the run planned them (:func:`planned_optimizers`).
    For each metric in :data:`SWEEP_METRICS` (epochs, steps, seconds, examples
    to target, over the seeds that reached it): the mean, the standard deviation
    (``_sd``) and the :func:`seed_interval` (``_lo``, ``_hi``). ``seeds`` counts
    the runs that finished; ``seeds_planned`` is machine.json's ``seeds`` (or,
    without it, the most seeds any row has).
    """
    runs = with_optimizer(results[results["kind"] == "sweep"])
    if runs.empty:
        return pd.DataFrame()
    numeric = ["batch_size", "eta", "epochs_to_target", "steps_to_target", "seconds_to_target",
               "examples_to_target", "best_val_accuracy", "final_train_loss", "final_val_loss", "seconds"]
    for c in numeric:
        runs[c] = pd.to_numeric(runs[c], errors="coerce")
    rows = []
    rank = {name: k for k, name in enumerate(planned_optimizers(machine or {}, runs))}
    runs["rank"] = runs["optimizer"].map(rank)
    for (_, b, eta), g in runs.groupby(["rank", "batch_size", "eta"], sort=True):
        row = {"optimizer": g["optimizer"].iloc[0], "batch_size": int(b), "eta": eta, "seeds": len(g),
               "reached": int((g["status"] == "reached").sum()), "diverged": int((g["status"] == "diverged").sum())}
        for metric in SWEEP_METRICS:
            values = g[f"{metric}_to_target"]
            row[metric] = values.mean()
            row[f"{metric}_sd"] = values.std(ddof=1)
            row[f"{metric}_lo"], row[f"{metric}_hi"] = seed_interval(values)
        row.update(best_val_accuracy=g["best_val_accuracy"].mean(), final_train_loss=g["final_train_loss"].mean(),
                   final_val_loss=g["final_val_loss"].mean())
        rows.append(row)
    summary = pd.DataFrame(rows)
    planned = (machine or {}).get("settings", {}).get("seeds")
    summary["seeds_planned"] = int(planned) if planned is not None else int(summary["seeds"].max())
    return summary


def best_per_batch_size(summary: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer and batch size, the eta with the fewest mean seconds to target among those where every
    seed got there (else the highest mean best validation accuracy)."""
    picks = []
    for _, g in summary.groupby(["optimizer", "batch_size"], sort=False):  # in the summary's order
        full = g[g["reached"] == g["seeds"]]
        picks.append(full["seconds"].idxmin() if not full.empty else g["best_val_accuracy"].idxmax())
    return summary.loc[picks].reset_index(drop=True)


def leaders(done: pd.DataFrame, metric: str) -> list:
    """Batch sizes not told apart from the one with the least mean ``metric``: their seed intervals overlap.

    The first is the point estimate (least mean); the others follow by mean.
    """
    ranked = done.sort_values(metric)
    best = ranked.iloc[0]
    tied = ranked[(ranked[f"{metric}_lo"] <= best[f"{metric}_hi"]) & (ranked[f"{metric}_hi"] >= best[f"{metric}_lo"])]
    return [int(b) for b in tied["batch_size"]]


def scaling_verdict(best: pd.DataFrame) -> dict:
    """Fastest batch size, fewest epochs, and the largest batch size that still scales, with their noise.

    "Still scales": examples to target at most twice the minimum over batch
    sizes, i.e. steps still drop at least half-proportionally with the batch
    size (McCandlish et al.'s critical batch size, E = 2 E_min, measured).

    ``best`` holds one optimizer (see :func:`verdicts_by_optimizer`). Only
    batch sizes where every finished seed reached the target count. Keys:
    ``fastest`` / ``fewest_epochs`` (least mean) with ``fastest_tied`` /
    ``fewest_epochs_tied`` (see :func:`leaders`; one entry when the point
    estimate stands clear of the noise); ``largest_scaling`` (by the means)
    with ``largest_scaling_range``: the smallest and largest answer the seed
    intervals allow (equal when the noise cannot change it); ``examples_min``;
    ``seeds``: the seeds behind the fastest batch size (one: its lead cannot be
    judged against the noise); ``most_seeds``: the most behind any batch size.
    """
    if "optimizer" in best and best["optimizer"].nunique() > 1:
        raise ValueError("scaling_verdict: best holds several optimizers; use verdicts_by_optimizer")
    done = best[(best["reached"] == best["seeds"]) & (best["seeds"] > 0)]
    if done.empty:
        return {}
    e_min = done["examples"].min()
    limit = 2 * e_min
    by_mean = int(done.loc[done["examples"] <= limit, "batch_size"].max())
    sure = done.loc[done["examples_hi"] <= limit, "batch_size"]
    possible = done.loc[done["examples_lo"] <= limit, "batch_size"]
    # With no batch size clear of the limit, the one at the minimum is the least the answer can be.
    low = int(sure.max()) if not sure.empty else int(done.loc[done["examples"].idxmin(), "batch_size"])
    fastest = leaders(done, "seconds")
    return {
        "fastest": fastest[0],
        "fastest_tied": fastest,
        "fewest_epochs": leaders(done, "epochs")[0],
        "fewest_epochs_tied": leaders(done, "epochs"),
        "largest_scaling": by_mean,
        "largest_scaling_range": (min(low, by_mean), max(int(possible.max()), by_mean)),
        "examples_min": float(e_min),
        "seeds": int(done.loc[done["batch_size"] == fastest[0], "seeds"].iloc[0]),
        "most_seeds": int(done["seeds"].max()),
    }


def planned_optimizers(machine: dict, results: pd.DataFrame | None = None) -> list:
    """The labels of the optimizers a sweep planned (machine.json's ``optimizers``), then any others its rows hold.

    A run recorded without optimizers trained plain SGD (:data:`~mbtrain.bench.results.SGD_LABEL`).
    """
    settings = machine.get("settings", {})
    planned = [label(d) if isinstance(d, dict) else str(d) for d in settings.get("optimizers", [])]
    if results is not None and not results.empty:
        planned += list(with_optimizer(results).loc[lambda r: r["kind"] == "sweep", "optimizer"].dropna())
    return list(dict.fromkeys(planned)) or [SGD_LABEL]


def reference_etas(machine: dict) -> dict:
    """``{optimizer label: its reference eta}`` from machine.json's settings (an older run: SGD's one eta)."""
    settings = machine.get("settings", {})
    etas = settings.get("eta")
    if "optimizers" not in settings:
        return {SGD_LABEL: etas} if etas is not None else {}
    etas = etas if isinstance(etas, list) else [etas] * len(settings["optimizers"])
    return dict(zip(planned_optimizers(machine), etas))


def optimizer_names(labels) -> dict:
    """``{label: what a report calls it}``: the optimizer's name, or its whole label where two share a name."""
    labels = list(dict.fromkeys(labels))
    names = [text.split("(", 1)[0] for text in labels]
    return {text: name if names.count(name) == 1 else text for text, name in zip(labels, names)}


def verdicts_by_optimizer(best: pd.DataFrame) -> dict:
    """``{optimizer label: scaling_verdict of its batch sizes}``, in the order of ``best``."""
    return {name: scaling_verdict(g) for name, g in best.groupby("optimizer", sort=False)}


def zhang_comparison(verdicts: dict, batch_sizes) -> pd.DataFrame:
    """Each optimizer's largest batch size that still scales beside plain SGD's: does it scale further?

    Zhang et al. (2019) found that momentum and Adam extend perfect scaling to
    larger batch sizes than plain SGD. Per optimizer other than SGD (a
    :func:`scaling_verdict` each in ``verdicts``; ``batch_sizes`` those the
    sweep measured), ``answer`` is:

    - ``"agrees"``: even the smallest answer its seed intervals allow lies
      above the largest SGD's allow (``largest_scaling_range``);
    - ``"does not agree"``: even its largest possible answer is at most SGD's
      smallest (it scales no further), with SGD stopping short of the largest
      batch size measured;
    - ``"cannot tell"``: the ranges overlap, SGD still scales at the largest
      batch size measured (nothing larger to stop at), or a verdict is missing;
      ``reason`` says which.

    Columns ``optimizer``, ``largest``, ``low``, ``high``, ``sgd_largest``,
    ``sgd_low``, ``sgd_high``, ``answer``, ``reason``. Empty without plain SGD
    or without another optimizer.
    """
    columns = ["optimizer", "largest", "low", "high", "sgd_largest", "sgd_low", "sgd_high", "answer", "reason"]
    sgd = [name for name in verdicts if name.split("(", 1)[0] == "sgd"]
    others = [name for name in verdicts if name not in sgd]
    if len(sgd) != 1 or not others:
        return pd.DataFrame(columns=columns)
    base, top = verdicts[sgd[0]], max(int(b) for b in batch_sizes)
    rows = []
    for name in others:
        mine = verdicts[name]
        row = dict.fromkeys(columns)
        row["optimizer"] = name
        if mine:
            row.update(largest=mine["largest_scaling"], low=mine["largest_scaling_range"][0],
                       high=mine["largest_scaling_range"][1])
        if base:
            row.update(sgd_largest=base["largest_scaling"], sgd_low=base["largest_scaling_range"][0],
                       sgd_high=base["largest_scaling_range"][1])
        if not base or not mine:
            missing = "plain SGD" if not base else "it"
            row.update(answer="cannot tell", reason=f"{missing} reached the target with every seed at no batch size")
        elif row["low"] > row["sgd_high"]:
            row.update(answer="agrees", reason="it still scales at larger batch sizes than plain SGD, beyond the noise")
        elif row["sgd_high"] >= top:
            row.update(answer="cannot tell", reason=f"plain SGD still scales at {top}, the largest batch size "
                                                     "measured: larger ones are needed to see where it stops")
        elif row["high"] <= row["sgd_low"]:
            row.update(answer="does not agree", reason="it stops scaling no later than plain SGD")
        else:
            row.update(answer="cannot tell", reason=OVERLAP_REASON)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def sweep_coverage(results: pd.DataFrame, machine: dict) -> pd.DataFrame:
    """Per planned optimizer and batch size: the runs (etas × seeds) planned and those that finished.

    The plan is machine.json's ``settings`` (``optimizers``, ``batch_sizes``,
    ``seeds``, one eta per batch size, or one per ``grid_factors`` entry for the
    grid policy); without it, the batch sizes and seeds the rows show. Columns:
    ``optimizer``, ``batch_size``, ``etas_planned``, ``seeds_planned``,
    ``runs_planned``, ``runs_finished``, ``fewest_seeds`` (of any eta that ran
    at this batch size).
    """
    settings = machine.get("settings", {})
    runs = with_optimizer(results[results["kind"] == "sweep"])
    seen = results[results["kind"].isin(["sweep", "curve"])]
    finished = runs.groupby(["optimizer", pd.to_numeric(runs["batch_size"]).astype(int),
                             pd.to_numeric(runs["eta"])]).size() if not runs.empty else pd.Series(dtype=int)
    if settings.get("batch_sizes") is not None:
        batch_sizes = [int(b) for b in settings["batch_sizes"]]
    else:
        batch_sizes = sorted(set(pd.to_numeric(seen["batch_size"]).dropna().astype(int)))
    seeds = int(settings["seeds"]) if settings.get("seeds") is not None else int(finished.max() if len(finished) else 0)
    etas = len(settings.get("grid_factors") or [1]) if settings.get("eta_policy") == "grid" else 1
    rows = []
    for name in planned_optimizers(machine, results):
        for b in batch_sizes:
            here = finished[(finished.index.get_level_values(0) == name) & (finished.index.get_level_values(1) == b)] \
                if len(finished) else finished
            rows.append({"optimizer": name, "batch_size": b, "etas_planned": etas, "seeds_planned": seeds,
                         "runs_planned": etas * seeds, "runs_finished": int(here.sum()),
                         "fewest_seeds": int(here.min()) if len(here) else 0})
    return pd.DataFrame(rows, columns=["optimizer", "batch_size", "etas_planned", "seeds_planned", "runs_planned",
                                       "runs_finished", "fewest_seeds"])


def noise_points(results: pd.DataFrame) -> pd.DataFrame:
    """The gradient-noise-scale rows of a sweep, their numeric columns as numbers."""
    noise = with_optimizer(results[results["kind"] == "noise"])
    for c in ("batch_size", "epoch", "steps", "val_accuracy", "noise_scale", "trace_sigma", "grad_norm_sq",
              "noise_rows"):
        noise[c] = pd.to_numeric(noise[c], errors="coerce")
    return noise


# -- how it was measured ----------------------------------------------------------------


def execution(results: pd.DataFrame, machine: dict) -> pd.DataFrame:
    """How the rows were measured: one row per ``executor`` and ``jobs`` (and ``workers`` where recorded).

    ``workers`` (the processes that really ran, e.g. on a Dask cluster) comes
    from a ``workers`` column of results.csv or machine.json's
    ``execution.workers``; it is missing (NA) when neither records it.
    """
    columns = [c for c in ("executor", "jobs", "workers") if c in results]
    ways = results[columns].dropna(subset=["executor", "jobs"]).drop_duplicates() if "executor" in results \
        else pd.DataFrame()
    recorded = machine.get("execution") or {"executor": "serial", "jobs": 1}
    if ways.empty:
        ways = pd.DataFrame([{k: recorded.get(k) for k in ("executor", "jobs")}])
    ways = ways.reset_index(drop=True)
    if "workers" not in ways or ways["workers"].isna().all():
        ways["workers"] = recorded.get("workers", pd.NA)
    return ways[["executor", "jobs", "workers"]]


def _first_number(column) -> float | None:
    values = pd.to_numeric(column, errors="coerce").dropna()
    return float(values.iloc[0]) if not values.empty else None
