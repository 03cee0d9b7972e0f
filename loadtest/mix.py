"""Priority mixes and density steps: plain parsing shared by the locustfile and the sweep (no locust,
no torch, no httpx imports, so both processes may use it)."""

from __future__ import annotations

DEFAULT_MIX = "1:10,3:30,5:60"


def parse_mix(text: str) -> dict[int, float]:
    """``"1:10,3:30,5:60"`` as ``{1: 0.1, 3: 0.3, 5: 0.6}``: priority -> share of the tasks (sums to 1).

    Priorities are integers >= 1 (1 is the most urgent); weights are non-negative numbers, at least
    one positive. ValueError with what was wrong otherwise.
    """
    weights: dict[int, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        prio, sep, weight = item.partition(":")
        try:
            p, w = int(prio), float(weight)
        except ValueError as e:
            raise ValueError(f"priority mix item {item!r} is not PRIORITY:WEIGHT, e.g. 1:10") from e
        if not sep or p < 1 or w < 0 or p in weights:
            raise ValueError(f"priority mix item {item!r}: priority must be an integer >= 1 given once, "
                             "weight a number >= 0")
        weights[p] = w
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"priority mix {text!r} has no positive weight")
    return {p: w / total for p, w in sorted(weights.items()) if w > 0}


def parse_users(text: str) -> list[int]:
    """``"1,2,4,8,16"`` as ``[1, 2, 4, 8, 16]`` (user counts, each >= 1)."""
    try:
        users = [int(u) for u in text.split(",") if u.strip()]
    except ValueError as e:
        raise ValueError(f"user counts {text!r} must be integers separated by commas") from e
    if not users or min(users) < 1:
        raise ValueError(f"user counts {text!r}: give at least one, each >= 1")
    return users


def step_at(steps: list[int], step_s: float, run_time_s: float) -> int | None:
    """Users wanted ``run_time_s`` seconds into a stepped run (``steps[k]`` during step k), None after."""
    k = int(run_time_s // step_s)
    return steps[k] if k < len(steps) else None
