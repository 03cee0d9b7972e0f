"""The sweep's outputs: the CSV of rows, the PNG (latency by priority vs density) and the summary."""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadtest.sweep import Row, SweepConfig

TARGET_RATIO = 2.0  # issue 9: p95 of priority 1 at the highest density <= 2x the lowest, in split mode


def write_csv(rows: list[Row], path: Path) -> None:
    """One line per mode x density x priority, the fields of ``Row`` as the header."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(rows[0]._fields if rows else [])
        for r in rows:
            writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in r])


def read_csv(path: Path) -> list[Row]:
    """The rows of a ``sweep.csv`` written by ``write_csv`` (to re-plot or re-summarise a sweep)."""
    from loadtest.sweep import Row

    with path.open(newline="") as f:
        return [Row(r["mode"], int(r["users"]), int(r["priority"]), int(r["requests"]), int(r["failures"]),
                    *(float(r[k]) for k in Row._fields[5:])) for r in csv.DictReader(f)]


def write_plot(rows: list[Row], path: Path, cfg: SweepConfig) -> None:
    """p95 (solid) and p50 (dotted) whole-task latency vs customers, one panel per priority, one colour
    per mode (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    priorities = cfg.priorities()
    fig, axes = plt.subplots(1, len(priorities), figsize=(4.2 * len(priorities), 3.8), sharey=False,
                             squeeze=False)
    colours = {"split": "tab:blue", "no-split": "tab:red", "dads": "tab:green"}
    for ax, prio in zip(axes[0], priorities, strict=True):
        for mode in cfg.modes:
            pts = sorted((r.users, r.p95_ms, r.p50_ms) for r in rows if r.mode == mode and r.priority == prio)
            if not pts:
                continue
            users = [u for u, _, _ in pts]
            colour = colours.get(mode)
            ax.plot(users, [p for _, p, _ in pts], "o-", color=colour, label=f"{mode} p95")
            ax.plot(users, [p for _, _, p in pts], ":", color=colour, label=f"{mode} p50")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(cfg.users), [str(u) for u in cfg.users])
        ax.set_title(f"priority {prio}" + (" (most urgent)" if prio == min(priorities) else ""))
        ax.set_xlabel("customers (locust users)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("task latency, submit to result (ms)")
    axes[0][-1].legend(fontsize=7)
    batch = int(str(cfg.orchestrator_extra.get("max_batch", 1)))
    batching = f"batches of up to {batch}" if batch > 1 else "no batching"
    fig.suptitle(f"{cfg.model}: {cfg.executors} executors x {cfg.threads} threads, {os.cpu_count()} CPUs, "
                 f"mix {cfg.mix}, {cfg.step_s:g} s per density, {batching}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


def _mode_summary(rows: list[Row], urgent: int) -> dict[str, Any]:
    mine = sorted((r for r in rows if r.priority == urgent), key=lambda r: r.users)
    lo, hi = mine[0], mine[-1]
    ratio = hi.p95_ms / lo.p95_ms if lo.p95_ms > 0 and not math.isnan(hi.p95_ms) else math.nan
    throughput: dict[int, float] = defaultdict(float)
    for r in rows:
        throughput[r.users] += r.throughput_rps
    return {
        "urgent_p95_ms": {str(r.users): _finite(r.p95_ms) for r in mine},
        "urgent_p50_ms": {str(r.users): _finite(r.p50_ms) for r in mine},
        "urgent_tasks": {str(r.users): r.requests for r in mine},
        "urgent_p95_ratio": _finite(ratio),
        "throughput_rps": {str(u): round(t, 3) for u, t in sorted(throughput.items())},
        "tasks": sum(r.requests for r in rows), "failures": sum(r.failures for r in rows),
        "load_avg_1m": {str(r.users): round(r.load_avg_1m, 2) for r in mine},
    }


def summarize(rows: list[Row], cfg: SweepConfig, csv_path: Path, png_path: Path,
              errors: dict[str, str] | None = None) -> dict[str, Any]:
    """Per mode: the most urgent priority's p95 at each density and p95(highest) / p95(lowest);
    a mode that failed carries its ``error`` (and what it measured before)."""
    urgent = min(cfg.priorities())
    errors = errors or {}
    modes: dict[str, dict[str, Any]] = {}
    for m in cfg.modes:
        mine = [r for r in rows if r.mode == m]
        modes[m] = _mode_summary(mine, urgent) if any(r.priority == urgent for r in mine) else {}
        if m in errors:
            modes[m]["error"] = errors[m]
    split_ratio = modes.get("split", {}).get("urgent_p95_ratio")
    return {
        "model": cfg.model, "api": cfg.api, "users": list(cfg.users), "step_s": cfg.step_s,
        "priority_mix": cfg.mix, "urgent_priority": urgent, "executors": cfg.executors,
        "threads": cfg.threads, "think_s": cfg.think_s, "cpus": os.cpu_count(),
        "orchestrator": dict(cfg.orchestrator_extra), "modes": modes,
        "target_ratio": TARGET_RATIO,
        "split_meets_target": None if split_ratio is None else split_ratio <= TARGET_RATIO,
        "failures": sum(r.failures for r in rows), "errors": errors, "csv": str(csv_path),
        "png": str(png_path),
    }
