"""The optimizers of a sweep side by side, and whether the run agrees with Zhang et al. (2019).

With several optimizers, a sweep's report ends its Time to target section
with: seconds, epochs and steps to target per batch size for each optimizer;
each one's fastest batch size and largest batch size that still scales (from
:func:`~mbtrain.bench.summaries.scaling_verdict`, with the ties and ranges the
noise leaves); and the comparison of those largest batch sizes with plain
SGD's (:func:`~mbtrain.bench.summaries.zhang_comparison`), in words that say
as much as the run can support: agrees, does not agree, or cannot tell.
"""
from __future__ import annotations

import pandas as pd

from .markdown import fmt, fmt_mean_sd, image_links, join_and, markdown_table
from .summaries import OVERLAP_REASON, reference_etas, zhang_comparison

ZHANG = ("Zhang et al. (2019, \"Which algorithmic choices matter at which batch sizes?\", NeurIPS) found that "
         "momentum and Adam extend perfect scaling to larger batch sizes than plain SGD")


def _figure(row, metric) -> str:
    """Mean ± sd of ``metric`` when every seed reached the target, else a dash (a mean of some seeds would flatter)."""
    if row["reached"] < row["seeds"] or row["seeds"] == 0:
        return "—"
    return fmt_mean_sd(row[metric], row[f"{metric}_sd"])


def _scaling(verdict) -> str:
    low, high = verdict["largest_scaling_range"]
    return str(verdict["largest_scaling"]) + ("" if low == high else f" ({low}–{high} within the noise)")


def _fastest(verdict) -> str:
    tied = verdict["fastest_tied"]
    return str(tied[0]) + (f" (not told apart from {join_and(sorted(tied[1:]))})" if len(tied) > 1 else "")


def side_by_side_lines(summary, best, verdicts, names, machine, provisional, plots) -> list:
    """The "Optimizers side by side" subsection (``best``: the best eta per optimizer and batch size)."""
    settings = machine.get("settings", {})
    policy = settings.get("eta_policy", "fixed")
    lines = ["\n### Optimizers side by side" + (f" ({provisional})" if provisional else "") + "\n"]
    lines.append("Per batch size, each optimizer at its best eta (the policy's, or the grid's fastest): mean ± sd "
                 "over the seeds of the seconds, epochs and steps to target; — where not every seed reached it "
                 "(the table above counts them).\n")
    wide = {"batch size": sorted(set(best["batch_size"]))}
    for metric, unit in (("seconds", "s"), ("epochs", "epochs"), ("steps", "steps")):
        for optimizer, name in names.items():
            rows = best[best["optimizer"] == optimizer].set_index("batch_size")
            wide[f"{name} {unit}"] = [_figure(rows.loc[b], metric) if b in rows.index else "not run"
                                      for b in wide["batch size"]]
    lines.append(markdown_table(pd.DataFrame(wide)))
    etas = reference_etas(machine)
    table = []
    unreached = "none (no batch size got every seed there)"
    for optimizer, name in names.items():
        verdict = verdicts.get(optimizer) or {}
        table.append({"optimizer": name, "base eta": fmt(etas.get(optimizer)),
                      "fastest batch size": _fastest(verdict) if verdict else unreached,
                      "largest that still scales": _scaling(verdict) if verdict else "",
                      "examples to target (min)": fmt(verdict["examples_min"]) if verdict else ""})
    lines.append("\n" + markdown_table(pd.DataFrame(table)))
    lines.extend(zhang_lines(verdicts, names, sorted(set(summary["batch_size"])), policy, provisional))
    lines.append("")
    lines.extend(image_links(plots))
    return lines


def zhang_lines(verdicts, names, batch_sizes, policy, provisional) -> list:
    """Each optimizer's largest batch size that still scales against plain SGD's, and the run's answer."""
    comparison = zhang_comparison(verdicts, batch_sizes)
    lines = [f"\n{ZHANG}. Here \"still scales\" means examples to target within 2× of that optimizer's own minimum "
             "(steps still drop at least half-proportionally with the batch size); an answer needs the two "
             "optimizers' ranges, as the seeds allow them, not to overlap.\n"]
    if comparison.empty:
        lines.append("- Cannot tell: this sweep has no plain SGD run to compare with (add `sgd` to `--optimizers`).")
        return lines
    sure = not provisional
    for r in comparison.itertuples():
        name = names.get(r.optimizer, r.optimizer)
        answer = f"**{r.answer}**" if sure and r.answer != "cannot tell" else r.answer
        if pd.isna(r.largest) or pd.isna(r.sgd_largest):
            lines.append(f"- {name}: {answer} — {r.reason}.")
            continue
        sgd = f"{r.sgd_largest}" + ("" if r.sgd_low == r.sgd_high else f" ({r.sgd_low}–{r.sgd_high} within the noise)")
        mine = f"{r.largest}" + ("" if r.low == r.high else f" ({r.low}–{r.high} within the noise)")
        lines.append(f"- {name}: largest batch size that still scales {mine}, plain SGD's {sgd}: {answer} — "
                     f"{r.reason}.")
    answers = list(comparison["answer"])
    if len(set(answers)) == 1:
        noise_only = (comparison["reason"] == OVERLAP_REASON).all()
        overall = answers[0] if answers[0] != "cannot tell" else "cannot tell" + (" within the noise" if noise_only
                                                                                 else "")
        overall = f"**{overall}**" if sure and answers[0] != "cannot tell" else overall
    else:
        parts = []
        for answer in dict.fromkeys(answers):
            which = comparison.loc[comparison["answer"] == answer, "optimizer"]
            parts.append(f"{answer} for {join_and(names.get(o, o) for o in which)}")
        overall = "; ".join(parts)
    lines.append(f"- This run{' (provisional)' if provisional else ''}: {overall}"
                 + ("" if policy == "grid" else " (with eta not tuned per batch size, as Zhang et al. tuned it; "
                                                "try `--eta-policy grid`)") + ".")
    return lines
