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

__all__ = [
    "STRATEGIES",
    "Need",
    "Rows",
    "Slice",
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
    "split_counts",
]
