"""Baselines DADS and No Split: one edge device and the cloud, the model cut once between them.

DADS (Hu et al., "Dynamic adaptive DNN surgery", as in Neurosurgeon) builds a graph whose minimum
s-t cut is the best partition: source ``edge``, sink ``cloud``, one node per layer; the edge
``edge -> layer`` costs the layer's cloud time (cut when it runs in the cloud), ``layer -> cloud``
its edge time (cut when it runs on the edge), ``prev -> layer`` the time to send the layer's input to
the cloud (cut at the partition), and infinite back edges forbid returning from the cloud to the
edge. Edge compute: eq. (1) with x = 1 on ``threads`` threads of one server; cloud compute eq. (2);
transfer eq. (4) plus the cloud's request overhead. Layers ``[0, cut)`` run on the edge, the rest in
the cloud; ``cut = len(layers)`` is No Split (the whole model on the edge; returning the result to
the client is neglected, as the paper does).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import networkx as nx

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import Linear, ModelSpec
from edgesplit.plan.cluster import Cloud, Cluster
from edgesplit.plan.latency import (
    BYTES_PER_VALUE,
    cloud_compute_time,
    cloud_part_time,
    cloud_transfer_time,
    compute_time,
    host_slowdown,
)


class DadsResult(NamedTuple):
    """A cut: layers ``[0, cut)`` on the edge, ``[cut, L)`` in the cloud; seconds."""

    cut: int
    edge_s: float
    transfer_s: float
    cloud_s: float

    @property
    def total_s(self) -> float:
        return self.edge_s + self.transfer_s + self.cloud_s


def input_sizes(spec: ModelSpec) -> list[int]:
    """Number of values entering each layer (edge and cloud), then the output: len = len(layers) + 1."""
    sizes = [math.prod(s) for s in spec.shapes()]
    at = sizes[-1]
    for layer in spec.cloud_layers:
        sizes.append(at)
        if isinstance(layer, Linear):
            at = layer.out_features
    sizes[-1] = at
    return sizes


def cut_latency(spec: ModelSpec, cut: int, edge_flops: float, cloud: Cloud) -> DadsResult:
    """Latency of running layers ``[0, cut)`` on an edge device of ``edge_flops`` FLOPS, the rest in
    the cloud."""
    n = len(spec.layers)
    if not 0 <= cut <= n:
        raise InvalidPlan(f"cut {cut} is not in [0, {n}]")
    flops = spec.layer_flops()
    edge = compute_time(sum(flops[:cut]), 1, edge_flops)
    if cut == n:
        return DadsResult(cut, edge, 0.0, 0.0)
    transfer = (cloud_transfer_time(BYTES_PER_VALUE * input_sizes(spec)[cut], cloud.link_bps)
                + cloud.overhead_s)
    return DadsResult(cut, edge, transfer, cloud_part_time(spec, cut, cloud))


def _edge_flops(cluster: Cluster, threads: int, server: int) -> float:
    """FLOPS of ``threads`` threads of one server running alone on its host: a host with fewer cores
    than that (a fractional CPU quota) runs them slower (``latency.host_slowdown``)."""
    if threads < 1:
        raise InvalidPlan(f"threads must be at least 1, got {threads}")
    srv = cluster.servers[cluster.index(server)]
    return threads * srv.flops_per_thread / host_slowdown([srv], [threads])[0]


def dads(spec: ModelSpec, cluster: Cluster, threads: int = 1, server: int = 0) -> DadsResult:
    """DADS: the edge/cloud cut of minimum latency, found as a minimum s-t cut (networkx)."""
    edge_flops = _edge_flops(cluster, threads, server)
    flops = spec.layer_flops()
    sizes = input_sizes(spec)
    cloud = cluster.cloud
    g = nx.DiGraph()
    g.add_edge("edge", "input")  # no capacity attribute: infinite, the input is on the edge
    prev: str | int = "input"
    for i, f in enumerate(flops):
        g.add_edge("edge", i, capacity=cloud_compute_time(f, cloud.layer_rate(spec.layers[i])))
        g.add_edge(i, "cloud", capacity=compute_time(f, 1, edge_flops))
        send = cloud_transfer_time(BYTES_PER_VALUE * sizes[i], cloud.link_bps) + cloud.overhead_s
        g.add_edge(prev, i, capacity=send)
        g.add_edge(i, prev)  # infinite: a layer in the cloud cannot be followed by one on the edge
        prev = i
    _, (_, cloud_side) = nx.minimum_cut(g, "edge", "cloud")
    in_cloud = [i for i in range(len(flops)) if i in cloud_side]
    return cut_latency(spec, min(in_cloud, default=len(flops)), edge_flops, cloud)


def no_split(spec: ModelSpec, cluster: Cluster, threads: int = 1, server: int = 0) -> DadsResult:
    """No Split: the whole model on one edge server's ``threads`` threads."""
    return cut_latency(spec, len(spec.layers), _edge_flops(cluster, threads, server), cluster.cloud)


def best_cut_scan(spec: ModelSpec, cluster: Cluster, threads: int = 1, server: int = 0) -> DadsResult:
    """Reference for tests: every cut tried in turn."""
    edge_flops = _edge_flops(cluster, threads, server)
    cuts = [cut_latency(spec, c, edge_flops, cluster.cloud) for c in range(len(spec.layers) + 1)]
    return min(cuts, key=lambda r: r.total_s)


def calibrate_cloud_flops(spec: ModelSpec, target_s: float, cloud_link_bps: float) -> float:
    """k_c such that running all of ``spec`` in the cloud (input shipped at ``cloud_link_bps``) takes
    ``target_s``: the calibration of ``cluster.PAPER_CLOUD_FLOPS`` from the paper's DADS figure."""
    ship = cloud_transfer_time(BYTES_PER_VALUE * math.prod(spec.input), cloud_link_bps)
    if target_s <= ship:
        raise InvalidPlan(f"target {target_s} s is below the input transfer time {ship} s")
    return sum(spec.layer_flops()) / (target_s - ship)
