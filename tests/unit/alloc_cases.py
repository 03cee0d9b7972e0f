"""Small allocation problems for the alloc tests: hand-made specs and servers (no network, fast)."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from edgesplit.models.spec import ModelSpec, spec_from_dict
from edgesplit.plan.cluster import Server


def small_spec(kernels: Sequence[int], channels: Sequence[int], size: int = 8,
               name: str = "tiny") -> ModelSpec:
    """A CNN with one conv (+ relu) per entry of ``kernels``, 'same' padding, then a small classifier."""
    layers: list[dict[str, object]] = []
    for k, c in zip(kernels, channels, strict=True):
        layers += [{"type": "conv2d", "out_channels": c, "kernel": k, "stride": 1, "padding": k // 2},
                   {"type": "relu"}]
    layers += [{"type": "flatten"}, {"type": "linear", "out_features": 4}]
    return spec_from_dict({"name": name, "input": [2, size, size], "num_classes": 4, "layers": layers})


def servers(speeds: Sequence[float], links: Sequence[float], threads: int,
            overhead_s: float = 0.0) -> tuple[Server, ...]:
    return tuple(Server(f"s{m}", threads, speed, link, overhead_s=overhead_s)
                 for m, (speed, link) in enumerate(zip(speeds, links, strict=True)))


@st.composite
def small_problems(draw: st.DrawFn) -> tuple[ModelSpec, tuple[Server, ...]]:
    """2-3 convs, 2-3 servers, zones of up to 6 threads: at most a few thousand allocations."""
    n_convs = draw(st.integers(2, 3))
    kernels = draw(st.lists(st.sampled_from([1, 3, 5]), min_size=n_convs, max_size=n_convs))
    channels = draw(st.lists(st.integers(2, 6), min_size=n_convs, max_size=n_convs))
    size = draw(st.integers(3, 7))
    m = draw(st.integers(2, 3))
    speeds = draw(st.lists(st.sampled_from([1e6, 2e6, 3e6]), min_size=m, max_size=m))
    links = draw(st.lists(st.sampled_from([1e5, 1e6, 1e9]), min_size=m, max_size=m))
    threads = draw(st.integers(n_convs, 6 if m == 2 else 5))
    overhead = draw(st.sampled_from([0.0, 1e-3]))
    return small_spec(kernels, channels, size), servers(speeds, links, threads, overhead)
