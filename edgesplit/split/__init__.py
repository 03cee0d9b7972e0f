"""Exact splitting of CNN layers across servers: halo geometry, slices, merge."""

from edgesplit.split.geometry import Need, Rows, clip, group_needs, layer_in_range, split_counts
from edgesplit.split.slices import (
    STRATEGIES,
    Slice,
    Strategy,
    check_group,
    compute_slice,
    conv_groups,
    crop_input,
    make_slices,
    merge,
    part_total,
    run_group,
)
from edgesplit.split.strategies import STRATEGY, Part, SlicingStrategy, slice_flops, worker_parts

__all__ = [
    "STRATEGIES",
    "STRATEGY",
    "Need",
    "Part",
    "Rows",
    "Slice",
    "SlicingStrategy",
    "Strategy",
    "check_group",
    "clip",
    "compute_slice",
    "conv_groups",
    "crop_input",
    "group_needs",
    "layer_in_range",
    "make_slices",
    "merge",
    "part_total",
    "run_group",
    "slice_flops",
    "split_counts",
    "worker_parts",
]
