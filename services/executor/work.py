"""How a sub-zone's k workers share one slice, and the FLOPs a slice really computes.

Both are the core's (``edgesplit.split.strategies``): each strategy cuts a slice into bands that are
themselves valid slices (``worker_parts``), and ``slice_flops`` is the one count of a slice's work that
the latency model (``plan.latency.slice_load``) uses too. Re-exported here for the executor's modules.
"""

from __future__ import annotations

from edgesplit.split.strategies import Part, slice_flops, worker_parts

__all__ = ["Part", "slice_flops", "worker_parts"]
