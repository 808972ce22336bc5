"""What a failed gradient check points to: the shapes the classic backprop bugs leave.

:func:`mbtrain.gradcheck` calls :func:`explain` with, for each layer and group,
your gradient ``g`` and the numerical one ``n`` on the checked entries. A hint
is given only where the evidence is clear:

- ``g`` is all zeros (a gradient dropped or never assigned);
- with L2, ``g - n`` is a multiple of ``(lmbda/n) * p`` of the parameters ``p``
  (a regularized bias, a missing or doubled L2 term, ``lmbda/m`` for ``lmbda/n``);
- ``g = c * n`` by least squares with a residual below 1e-4 of ``|g|``: ``c``
  near ``m`` (summed, not divided by the batch size), ``1/m``, ``-1`` (sign),
  ``2`` or ``1/2``, or, over three entries or more, any other constant (the
  right direction, the wrong scale);
- ``g.T = n`` for a square weight matrix (transposed);
- the output biases equal the mean output delta of another built-in cost
  (BP1 of the wrong cost);
- otherwise, the pattern over layers: the highest wrong layer below right
  ones (the error enters there: BP2, or that layer's BP3/BP4), weights wrong
  with right biases (BP4), biases wrong with right weights (BP3).

Layers are numbered from 1, as in :mod:`mbtrain.gradcheck`.
"""
from __future__ import annotations

import numpy as np

from .costs import BUILTIN_COSTS

#: Largest relative least-squares residual for "g is c times n" to count as evidence.
_RESIDUAL = 1e-4
#: Relative closeness of a fitted factor to a recognised one (m, -1, 2, ...).
_FACTOR = 1e-3
#: Fewest entries for an unrecognised factor to count: one or two always fit some factor exactly.
_GENERIC_MIN_ENTRIES = 3


@np.errstate(over="ignore", invalid="ignore")  # huge gradients: no fit, no hint, no warning
def _fit(target, basis):
    """``(c, residual)``: ``c`` minimizing ``|target - c basis|``, residual relative to ``|target|``."""
    bb = float(basis @ basis)
    scale = float(np.linalg.norm(target))
    if not (bb > 0 and scale > 0 and np.isfinite(bb) and np.isfinite(scale)):
        return None, np.inf
    c = float(target @ basis) / bb
    return c, float(np.linalg.norm(target - c * basis)) / scale


def _near(c, value) -> bool:
    return abs(c - value) <= _FACTOR * abs(value)


def _scale_hint(c, m, generic) -> str:
    if m > 1 and _near(c, m):
        also = " (or a stray factor of 2)" if m == 2 else ""
        return (f"the gradient is m = {m} times the numerical one: summed over the rows, not divided by "
                f"the batch size m{also}")
    if m > 1 and _near(c, 1 / m):
        return f"the gradient is 1/m = 1/{m} of the numerical one: divided by the batch size twice"
    if _near(c, -1):
        return "the gradient has the wrong sign (-1 times the numerical one): y - a for a - y somewhere?"
    if _near(c, 2):
        return "the gradient is twice the numerical one: a stray factor of 2 (the 1/2 of the quadratic cost dropped?)"
    if _near(c, 0.5):
        return "the gradient is half the numerical one: a stray factor of 1/2"
    if not generic:
        return ""
    return f"the gradient is {c:.4g} times the numerical one: the right direction, the wrong scale"


def _l2_hint(group, c, lmbda, n, m, generic) -> str:
    term = "(lmbda/n) b" if group == "biases" else "(lmbda/n) W"
    if not generic and not (_near(c, 1) or _near(c, -1) or (n != m and _near(1 + c, n / m))):
        return ""
    if group == "biases":
        times = "" if _near(c, 1) else f" {c:.4g} times"
        return f"the gradient includes{times} an L2 term {term}: biases are not regularized"
    if _near(c, -1):
        return f"the gradient misses the L2 term {term} (lmbda = {lmbda:g}, n = {n})"
    if _near(c, 1):
        return f"the gradient has the L2 term {term} twice"
    factor = 1 + c
    if n != m and _near(factor, n / m):
        return f"the L2 term uses lmbda/m (m = {m} rows) for lmbda/n (n = {n} training rows)"
    return (f"the gradient has {factor:.4g} times the L2 term {term} (lmbda = {lmbda:g}, n = {n}): "
            "a wrong lmbda or n?")


def _group_hint(group, local, shape, g, numeric, params, m, lmbda, n) -> str:
    """The hint for one failing group, or ""."""
    if not np.any(numeric):
        return ""
    generic = len(local) >= _GENERIC_MIN_ENTRIES
    if not np.any(g):
        return ("the gradient is all zeros: dropped or never assigned? (BP3: dC/db = the mean of delta "
                "over the rows)" if group == "biases" else
                "the gradient is all zeros: dropped or never assigned? (BP4: dC/dW = delta.T @ a_prev / m)")
    if lmbda > 0:
        c, residual = _fit(g - numeric, (lmbda / n) * params)
        if c is not None and residual < _RESIDUAL and abs(c) > _FACTOR:
            hint = _l2_hint(group, c, lmbda, n, m, generic)
            if hint:
                return hint
    c, residual = _fit(g, numeric)
    if c is not None and residual < _RESIDUAL and not _near(c, 1):
        return _scale_hint(c, m, generic)
    complete = len(local) == int(np.prod(shape))
    if group == "weights" and complete and shape[0] == shape[1]:
        c, residual = _fit(g.reshape(shape).T.ravel(), numeric)
        if c is not None and residual < _RESIDUAL and _near(c, 1):
            return "the gradient is transposed: weights are (n_out, n_in), so dC/dW = delta.T @ a_prev / m"
    return ""


def _other_cost(net, X, Y, grad_b_out) -> str:
    """The name of the built-in cost whose mean output delta ``grad_b_out`` is, or "" for none."""
    z, a = net._output(X)
    for cost_class in BUILTIN_COSTS:
        if cost_class.name == net.cost.name or cost_class.output_activation != net.cost.output_activation:
            continue
        expected = cost_class().delta(z, a, Y).mean(axis=0)
        scale = max(float(np.abs(expected).max()), 1e-12)
        if float(np.abs(grad_b_out - expected).max()) <= 1e-8 * scale:
            return cost_class.name
    return ""


def _layer_list(layers) -> str:
    layers = sorted(layers)
    return f"layer {layers[0]}" if len(layers) == 1 else "layers " + ", ".join(map(str, layers))


def _pattern_hints(status, n_layers, cost_name) -> list[str]:
    """Hints from which layers and groups fail, when no group has a hint of its own.

    ``status[(layer, group)]`` is True for a group that passed.
    """
    hints = []
    both_wrong = [l for l in range(1, n_layers + 1)
                  if not status[(l, "weights")] and not status[(l, "biases")]]
    if both_wrong:
        k = max(both_wrong)
        above_right = all(status[(l, group)] for l in range(k + 1, n_layers + 1) for group in ("weights", "biases"))
        if k == n_layers:
            hints.append(f"the output layer (layer {k}) is wrong: check BP1, the output delta of cost "
                         f"{cost_name!r} (mbtrain's is net.cost.delta(z, a, y)), and BP2 below it")
        elif above_right:
            wrong = [l for l in range(1, k + 1)
                     if not status[(l, "weights")] or not status[(l, "biases")]]
            right = range(k + 1, n_layers + 1)
            hints.append(
                f"{_layer_list(right)} {'is' if len(right) == 1 else 'are'} right and {_layer_list(wrong)} "
                f"{'is' if len(wrong) == 1 else 'are'} wrong: the error "
                f"enters at layer {k}, in BP2 (the delta passed back from layer {k + 1}: "
                f"(delta_{k + 1} @ W{k + 1}) * sigma'(z_{k}), sigma' missing or applied twice?) or in "
                f"layer {k}'s BP3/BP4")
    for l in range(1, n_layers + 1):
        weights_ok, biases_ok = status[(l, "weights")], status[(l, "biases")]
        if biases_ok and not weights_ok:
            below = "X" if l == 1 else f"a_{l - 1}, the activations of layer {l - 1}"
            hints.append(f"layer {l}: biases right, weights wrong, so delta_{l} is right: check BP4, "
                         f"dC/dW{l} = delta_{l}.T @ {below}, divided by m")
        elif weights_ok and not biases_ok:
            hints.append(f"layer {l}: weights right, biases wrong: check BP3, dC/db{l} = the mean of "
                         f"delta_{l} over the rows")
    return hints


def explain(table, checked, net, X, Y, analytic, lmbda, n):
    """``(row_hints, hints)``: a short hint per row of ``table`` ("" for none) and the sentences.

    ``checked`` holds, per row, ``(local_indices, shape, g, numeric)``: the
    entries checked within that weight matrix or bias vector, your gradient
    and the numerical one on them. ``net`` is the float64 network checked.
    """
    m = X.shape[0]
    weights, biases = net.weights, net.biases
    row_hints = []
    for row, (local, shape, g, numeric) in zip(table.itertuples(), checked):
        if row.ok:
            row_hints.append("")
            continue
        params = (weights if row.group == "weights" else biases)[row.layer - 1].ravel()[local]
        row_hints.append(_group_hint(row.group, local, shape, g, numeric, params, m, lmbda, n))
    hints = []
    # identical hints on several groups are said once, naming them all
    for hint in dict.fromkeys(h for h in row_hints if h):
        where = ", ".join(f"layer {r.layer} {r.group}" for r, h in zip(table.itertuples(), row_hints) if h == hint)
        hints.append(f"{where}: {hint}")
    unexplained = [not row.ok and not h for row, h in zip(table.itertuples(), row_hints)]
    if hints or not any(unexplained):
        return row_hints, hints
    n_layers = net.layout.n_layers
    output_biases = table.index[(table["layer"] == n_layers) & (table["group"] == "biases")][0]
    if not table.loc[output_biases, "ok"]:
        offset = net.layout.bias_offsets[-1]
        other = _other_cost(net, X, Y, analytic[offset:offset + net.sizes[-1]])
        if other:
            for i in table.index[table["layer"] == n_layers]:
                if not table.loc[i, "ok"]:
                    row_hints[i] = f"the output delta of cost {other!r}"
            return row_hints, [f"the output delta (BP1) is the one of cost {other!r} (the output biases' "
                               f"gradient is its mean over the rows), but the network's cost is "
                               f"{net.cost.name!r}"]
    status = {(row.layer, row.group): row.ok for row in table.itertuples()}
    return row_hints, _pattern_hints(status, n_layers, net.cost.name)
