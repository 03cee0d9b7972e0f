"""The planner's per-unit loads bound the exact slice loads from above; the DP covers the edge."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.models import BUILTINS, get_spec
from edgesplit.plan.cluster import scenario
from edgesplit.plan.latency import map_bytes, slice_load
from edgesplit.plan.search import SpecFacts, best_grouping, cut_points, unit_loads, valid_strategies
from edgesplit.split import make_slices, part_total

FACTS = {name: SpecFacts.of(get_spec(name)) for name in ("digits-cnn", "alexnet-paper", "alexnet")}


@st.composite
def group_splits(draw: st.DrawFn) -> tuple[str, int, int, str, list[int]]:
    name = draw(st.sampled_from(sorted(FACTS)))
    spec = FACTS[name].spec
    points = cut_points(spec)
    i = draw(st.integers(0, len(points) - 2))
    j = draw(st.integers(i + 1, len(points) - 1))
    start, stop = points[i], points[j]
    strategy = draw(st.sampled_from(valid_strategies(spec, start, stop)))
    total = part_total(spec, start, stop, strategy)
    servers = draw(st.integers(1, 6))
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=servers - 1, max_size=servers - 1)))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    return name, start, stop, strategy, parts


@settings(max_examples=150, deadline=None)
@given(group_splits())
def test_unit_loads_bound_the_exact_loads(case: tuple[str, int, int, str, list[int]]) -> None:
    name, start, stop, strategy, parts = case
    f = FACTS[name]
    bound = unit_loads(f, start, stop, strategy)  # type: ignore[arg-type]
    for n, sl in zip(parts, make_slices(f.spec, start, stop, strategy, parts), strict=True):  # type: ignore[arg-type]
        exact = slice_load(f.spec, sl)
        assert (exact.in_bytes, exact.out_bytes) == (
            (0, 0) if sl.empty else (map_bytes(sl.in_shape(f.spec)), map_bytes(sl.out_shape(f.spec))))
        assert exact.flops <= bound.flops[n] * (1 + 1e-9) + 1e-6
        assert exact.in_bytes <= bound.in_bytes[n]
        assert exact.out_bytes == bound.out_bytes[n]


def test_best_grouping_covers_the_edge_layers() -> None:
    for name in BUILTINS:
        spec = get_spec(name)
        choices = best_grouping(SpecFacts.of(spec), scenario("edge-1g").servers)
        assert choices[0].start == 0 and choices[-1].stop == spec.n_edge
        assert all(a.stop == b.start for a, b in itertools.pairwise(choices))
        assert all(sum(c.parts) == part_total(spec, c.start, c.stop, c.strategy) for c in choices)
