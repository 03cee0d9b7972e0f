"""Fig. 9 by real split inference (torch): does splitting the convs change the predictions?

Every method runs the edge part group by group with ``edgesplit.split.run_group`` (the same code the
executors run), merges, and finishes with the unsplit FC layers:

* ``rows``: one conv per group, output rows split evenly, each slice given its halo;
* ``kernel-rows``: the paper's split (section 3.3), at most kernel-height servers per conv;
* ``coedge``: CoEdge, the whole edge part as one fused rows group (input split by height), with halos;
* ``channels``: Average Channel Split, every conv but the first split evenly by output channels;
* ``naive-rows`` / ``naive-coedge``: the same splits, but a slice receives only its own share of the
  input rows (the input split in proportion to the output rows) and zeros where its halo should be,
  as if each part were a separate image padded with zeros. Our guess (untested against the paper's
  code, which is not published) is that the paper's reported losses come from something like this:
  the naive splits lose predictions here, while the exact methods agree with the unsplit model on
  every input we ran. The paper itself blames rounding ("infinite decimals", section 5.4).

On digits (scikit-learn) the accuracy loss is the unsplit test accuracy minus the split one; on
``alexnet-paper`` with seeded weights and random inputs (no labels) it is 1 - agreement of the
top-1 predictions with the unsplit model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from edgesplit.models.spec import Conv2d, ModelSpec
from edgesplit.registry import Registry
from edgesplit.split import STRATEGY, Slice, Strategy, compute_slice, conv_groups, part_total, run_group

Method = Literal["rows", "kernel-rows", "coedge", "channels", "naive-rows", "naive-coedge"]


class AccuracyMethod(NamedTuple):
    """How a method splits the edge part: ``strategy`` on the groups that start with a conv (rows
    elsewhere), all edge layers in one group (``fused``, CoEdge) or one conv per group, the first group
    left whole (``first_whole``, Average Channel Split), and ``naive`` servers that zero the input rows
    outside their own share (no halo)."""

    strategy: Strategy
    fused: bool = False
    first_whole: bool = False
    naive: bool = False


ACCURACY_METHODS: Registry[Method, AccuracyMethod] = Registry("method", {
    "rows": AccuracyMethod("rows"),
    "kernel-rows": AccuracyMethod("kernel-rows"),
    "coedge": AccuracyMethod("rows", fused=True),
    "channels": AccuracyMethod("channels", first_whole=True),
    "naive-rows": AccuracyMethod("rows", naive=True),
    "naive-coedge": AccuracyMethod("rows", fused=True, naive=True),
})
METHODS: tuple[Method, ...] = ACCURACY_METHODS.names
EXACT: tuple[Method, ...] = tuple(n for n, m in ACCURACY_METHODS.items() if not m.naive)


def even(total: int, k: int) -> list[int]:
    """``total`` units over ``k`` parts as evenly as possible (the first parts get the remainder)."""
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


Runner = Callable[[int, Slice, torch.Tensor], torch.Tensor]


def _naive_runner(module: nn.Sequential, spec: ModelSpec) -> Runner:
    """A server that zeroes every input row outside its own share (no halo from its neighbours).

    Its own share of the group's input is the band in proportion to its output rows:
    ``[r0 * H_in // H_out, r1 * H_in // H_out)``; the bands of all servers tile the input.
    """
    shapes = spec.shapes()

    def run(_m: int, sl: Slice, x: torch.Tensor) -> torch.Tensor:
        h_in, h_out = shapes[sl.start][1], shapes[sl.stop][1]
        own = (sl.out_rows[0] * h_in // h_out, sl.out_rows[1] * h_in // h_out)
        rows = torch.arange(sl.in_rows[0], sl.in_rows[1])
        keep = ((rows >= own[0]) & (rows < own[1])).to(x.dtype).view(1, 1, -1, 1)
        return compute_slice(module, spec, sl, x * keep)

    return run


def _plan(spec: ModelSpec, method: Method, servers: int) -> list[tuple[int, int, Strategy, list[int]]]:
    """(start, stop, strategy, parts) per group for ``method`` on ``servers`` equal servers."""
    how = ACCURACY_METHODS[method]
    groups = [(0, spec.n_edge)] if how.fused else conv_groups(spec)
    out: list[tuple[int, int, Strategy, list[int]]] = []
    for g, (a, b) in enumerate(groups):
        whole = how.first_whole and g == 0  # the first conv is not split
        strategy: Strategy = how.strategy if isinstance(spec.layers[a], Conv2d) and not whole else "rows"
        total = part_total(spec, a, b, strategy)
        if whole:
            parts = [total]
        else:
            parts = even(total, min(servers, total) if STRATEGY[strategy].caps_servers else servers)
        out.append((a, b, strategy, parts))
    return out


@torch.no_grad()
def split_predict(module: nn.Sequential, spec: ModelSpec, method: Method, servers: int,
                  x: torch.Tensor) -> torch.Tensor:
    """Logits of the whole model with its edge part split by ``method`` over ``servers`` servers."""
    y = x
    for a, b, strategy, parts in _plan(spec, method, servers):
        runner = _naive_runner(module, spec) if ACCURACY_METHODS[method].naive else None
        y = run_group(module, spec, a, b, strategy, parts, y, runner)
    return module[spec.n_edge :](y)


def _batches(x: torch.Tensor, size: int) -> Iterable[torch.Tensor]:
    for i in range(0, len(x), size):
        yield x[i : i + size]


@torch.no_grad()
def evaluate(module: nn.Sequential, spec: ModelSpec, x: torch.Tensor, labels: torch.Tensor | None,
             methods: Iterable[tuple[Method, int]], dataset: str, batch: int = 64,
             progress: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """One row per (method, servers): agreement with the unsplit model, accuracy and loss."""
    ref = torch.cat([module(b) for b in _batches(x, batch)]).argmax(1)
    ref_acc = float((ref == labels).float().mean()) if labels is not None else None
    rows = []
    for method, servers in methods:
        logits = [split_predict(module, spec, method, servers, b) for b in _batches(x, batch)]
        pred = torch.cat(logits).argmax(1)
        agreement = float((pred == ref).float().mean())
        row: dict[str, Any] = {"dataset": dataset, "model": spec.name, "method": method, "servers": servers,
                               "samples": len(x), "agreement": agreement, "exact": method in EXACT}
        if labels is not None and ref_acc is not None:
            acc = float((pred == labels).float().mean())
            row.update(unsplit_accuracy=ref_acc, accuracy=acc, accuracy_loss=ref_acc - acc)
        else:
            row.update(unsplit_accuracy=None, accuracy=None, accuracy_loss=1.0 - agreement)
        rows.append(row)
        if progress is not None:
            progress()
    return rows


def fig9_data(quick: bool = False, seed: int = 0,
              tick: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Fig. 9: digits-cnn on scikit-learn's digits (test split) and alexnet-paper with seeded weights
    on seeded random inputs; the exact methods on 8 servers (the paper's), the naive ones on 2, 4, 8."""
    from edgesplit.models.build import load_model
    from edgesplit.models.digits import digits_data, digits_model
    from edgesplit.models.zoo import get_spec

    torch.manual_seed(seed)
    runs: list[tuple[Method, int]] = [(m, 8) for m in EXACT]
    runs += [(m, k) for m in ("naive-rows", "naive-coedge") for k in (2, 4, 8)]
    data = digits_data(seed)
    x_digits, y_digits = (data.x_test[:120], data.y_test[:120]) if quick else (data.x_test, data.y_test)
    rows = evaluate(digits_model(), get_spec("digits-cnn"), x_digits, y_digits, runs, "digits", progress=tick)
    alex = get_spec("alexnet-paper")
    x = torch.randn(2 if quick else 48, *alex.input, generator=torch.Generator().manual_seed(seed))
    rows += evaluate(load_model(alex, seed=seed), alex, x, None, runs, "random", batch=16, progress=tick)
    return rows
