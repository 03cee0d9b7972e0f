"""Slice efficiency profiles (data only; measured by ``edgesplit.split.profile.measure_profile``).

Eq. (1) prices a slice at its FLOPs over the server's one rate. A profile holds, per group
``[start, stop)`` and strategy, the factor ``efficiency(n)`` by which a slice of ``n`` units takes
longer than its FLOPs at the whole model's rate, measured at a few unit counts and interpolated in
log n between them (1 for a group not profiled). The latency model multiplies a slice's compute time
by it (``plan.latency.server_times``) and the planner's search its unit loads (``plan.search``), so
both price a slice alike. Cluster files carry one per model under ``profiles``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgesplit.errors import InvalidInput
from edgesplit.type_aliases import Strategy


@dataclass(frozen=True)
class GroupProfile:
    """Measured efficiency of the group ``[start, stop)`` split by ``strategy``: a slice of
    ``units[i]`` units took ``efficiency[i]`` times its FLOPs' time at the whole model's rate."""

    start: int
    stop: int
    strategy: Strategy
    units: tuple[int, ...]
    efficiency: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.units or len(self.units) != len(self.efficiency):
            raise InvalidInput(f"profile of [{self.start}, {self.stop}) {self.strategy}: units and "
                               "efficiency must be non-empty and of one length")
        if list(self.units) != sorted(set(self.units)) or self.units[0] < 1:
            raise InvalidInput(f"profile of [{self.start}, {self.stop}): units must be increasing and >= 1")
        if min(self.efficiency) <= 0 or not all(math.isfinite(e) for e in self.efficiency):
            raise InvalidInput(f"profile of [{self.start}, {self.stop}): efficiency must be finite and > 0")

    def at(self, n: np.ndarray) -> np.ndarray:
        """The factor at unit counts ``n`` (>= 1): interpolated in log n, the end values beyond them."""
        return np.interp(np.log(np.maximum(n, 1)), np.log(self.units), self.efficiency)


@dataclass(frozen=True)
class SliceProfile:
    """One model's group profiles (module docstring)."""

    model: str
    groups: tuple[GroupProfile, ...]

    def _group(self, start: int, stop: int, strategy: str) -> GroupProfile | None:
        key = (start, stop, strategy)
        return next((g for g in self.groups if (g.start, g.stop, g.strategy) == key), None)

    def factor(self, start: int, stop: int, strategy: str, units: int) -> float:
        """The factor of one slice of ``units`` units (1 for a group not profiled)."""
        g = self._group(start, stop, strategy)
        return 1.0 if g is None or units < 1 else float(g.at(np.array([units]))[0])

    def factors(self, start: int, stop: int, strategy: str, total: int) -> np.ndarray:
        """Factors of 0..total units (index = units; 1 at 0 units, which compute nothing)."""
        g = self._group(start, stop, strategy)
        out = np.ones(total + 1)
        if g is not None and total >= 1:
            out[1:] = g.at(np.arange(1, total + 1))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [{"start": g.start, "stop": g.stop, "strategy": g.strategy, "units": list(g.units),
                            "efficiency": [round(e, 4) for e in g.efficiency]} for g in self.groups]}

    @classmethod
    def from_dict(cls, model: str, raw: Mapping[str, Any]) -> SliceProfile:
        try:
            return cls(model, tuple(GroupProfile(int(g["start"]), int(g["stop"]), g["strategy"],
                                                 tuple(int(u) for u in g["units"]),
                                                 tuple(float(e) for e in g["efficiency"]))
                                    for g in raw["groups"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"profile of {model}: expected {{groups: [{{start, stop, strategy, units, "
                               f"efficiency}}]}}: {e!r}") from e
