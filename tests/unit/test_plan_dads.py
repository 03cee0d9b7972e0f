"""DADS (min-cut) and No Split baselines, and the calibration of the cloud's FLOPS."""

from __future__ import annotations

import pytest

from edgesplit.models import BUILTINS, get_spec
from edgesplit.plan.cluster import PAPER_CLOUD_FLOPS, scenario
from edgesplit.plan.dads import best_cut_scan, calibrate_cloud_flops, cut_latency, dads, no_split


@pytest.mark.parametrize("model", BUILTINS)
@pytest.mark.parametrize("threads", [1, 5, 20])
@pytest.mark.parametrize("name", ["paper", "edge-1g"])
def test_min_cut_finds_the_best_cut(model: str, threads: int, name: str) -> None:
    spec, cluster = get_spec(model), scenario(name, seed=1)
    got, ref = dads(spec, cluster, threads), best_cut_scan(spec, cluster, threads)
    assert got.total_s == pytest.approx(ref.total_s, rel=1e-9)


def test_dads_on_alexnet_at_one_thread_is_the_papers_17_ms() -> None:
    spec = get_spec("alexnet-paper")
    for seed in range(5):
        result = dads(spec, scenario("paper", seed))
        assert result.cut == 0  # at one thread every map is too big to ship: all in the cloud
        assert result.total_s == pytest.approx(17e-3, abs=0.1e-3)
    assert no_split(spec, scenario("paper")).total_s == pytest.approx(38.5e-3, abs=0.1e-3)


def test_calibration_gives_the_constant() -> None:
    k_c = calibrate_cloud_flops(get_spec("alexnet-paper"), 17e-3, 115e6)
    assert k_c == pytest.approx(PAPER_CLOUD_FLOPS, rel=1e-3)


def test_more_edge_threads_move_the_cut_to_the_edge() -> None:
    spec, cluster = get_spec("alexnet-paper"), scenario("paper")
    assert dads(spec, cluster, threads=20).cut == len(spec.layers)  # 20 threads: No Split wins
    assert dads(spec, cluster, threads=20).total_s < dads(spec, cluster, threads=1).total_s


def test_cut_latency_parts() -> None:
    spec, cluster = get_spec("alexnet-paper"), scenario("paper")
    r = cut_latency(spec, spec.n_edge, 80e9, cluster.cloud)
    assert r.edge_s == pytest.approx(spec.edge_flops() / 80e9)
    assert r.transfer_s == pytest.approx(8 * 4 * 256 * 25 / cluster.cloud.link_bps)
    assert r.cloud_s == pytest.approx(spec.cloud_flops() / PAPER_CLOUD_FLOPS)
