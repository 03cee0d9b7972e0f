"""The paper's fig. 6: TD3 vs DDPG reward curves while training the sub-zone allocator, both CNNs.

``reproduce_fig6`` trains TD3 and DDPG on the paper's MDP as printed (paper observation, paper
action ``floor(r*R)`` with Algorithm 2's clipping, the paper's kernel-rows split) for alexnet-paper
and vgg16-paper on the paper scenario, one run per seed, and writes ``fig6.png`` (one panel per CNN,
the mean over seeds of the moving-average episode reward) and ``fig6.csv`` (every episode of every run).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesplit.alloc.train import TrainConfig, smooth, train

FIG6_MODELS = ("alexnet-paper", "vgg16-paper")
FIG6_ALGOS = ("td3", "ddpg")
FIG6_STEPS = 10_000
FIG6_SEEDS = (0,)
WINDOW = 50
SETTLE_BAND = 0.1  # reward units (the even allocation returns -1)


def fig6_config(model: str, algo: str, steps: int, seed: int) -> TrainConfig:
    """The configuration of one fig. 6 run (module docstring)."""
    return TrainConfig(model=model, algo=algo, steps=steps, seed=seed, action="paper",  # type: ignore[arg-type]
                       split="paper", obs="paper")


def _read(path: Path) -> list[dict[str, float]]:
    with path.open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def settled_step(rows: list[dict[str, float]], band: float = SETTLE_BAND) -> int | None:
    """The first step from which the ``WINDOW``-episode moving average of the reward stays within ``band``
    of its final value: a convergence speed that one noisy episode cannot move."""
    if not rows:
        return None
    avg = smooth([r["reward"] for r in rows], WINDOW)
    outside = np.flatnonzero(np.abs(avg - avg[-1]) > band)
    first = int(outside[-1]) + 1 if len(outside) else 0
    return int(rows[min(first, len(rows) - 1)]["step"])


def _mean_curve(runs: list[list[dict[str, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean over runs of the smoothed reward, on the first run's step grid (runs share episode lengths)."""
    length = min(len(r) for r in runs)
    steps = np.array([row["step"] for row in runs[0][:length]])
    values = np.mean([smooth([row["reward"] for row in r[:length]], WINDOW) for r in runs], axis=0)
    return steps, values


def exact_reference(model: str) -> dict[str, float]:
    """The exact allocator in the fig. 6 MDP: its return ``-latency / scale_s`` (``reward``), its summed
    stage latency (``latency_s``) and its gap to the certified lower bound (``gap``)."""
    from edgesplit.alloc.cost import build_problem, even_allocation
    from edgesplit.alloc.exact import best_allocation
    from edgesplit.models import get_spec
    from edgesplit.plan.cluster import resolve_cluster

    config = fig6_config(model, "td3", 1, 0)
    servers = resolve_cluster(config.scenario, seed=config.scenario_seed).servers
    problem = build_problem(get_spec(model), servers, split=config.split)
    scale = problem.value(even_allocation(problem.zone, problem.n_stages), "sum")
    best = best_allocation(problem, "sum")
    return {"reward": -best.value / scale, "latency_s": best.value, "gap": best.gap}


def best_reward(model: str) -> float:
    """The return of the exact allocator's allocation in the fig. 6 MDP: ``-latency / scale_s``."""
    return exact_reference(model)["reward"]


def plot_fig6(curves: dict[tuple[str, str], list[list[dict[str, float]]]], path: Path,
              best: dict[str, float] | None = None) -> None:
    """One panel per CNN, TD3 and DDPG in each (mean over seeds of the moving average), with the
    even allocation's return (-1) and the exact allocator's (``best``) as references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(m for m, _ in curves))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for (m, algo), runs in curves.items():
            if m == model and runs and all(runs):
                steps, values = _mean_curve(runs)
                plural = "s" if len(runs) > 1 else ""
                ax.plot(steps, values, label=f"{algo.upper()} ({len(runs)} seed{plural})")
        ax.axhline(-1.0, color="grey", linestyle=":", label="even allocation")
        if best and model in best:
            ax.axhline(best[model], color="black", linestyle="--", label="exact allocator")
        ax.set_title(model)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"episode reward (moving avg. {WINDOW})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Fig. 6: TD3 vs DDPG rewards (reward = -latency / even allocation's latency)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def reproduce_fig6(out_dir: str | Path, steps: int | None = None, seeds: Sequence[int] | None = None,
                   models: Sequence[str] = FIG6_MODELS,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train TD3 and DDPG for each model and seed, write ``fig6.png`` + ``fig6.csv`` into ``out_dir``.

    Returns ``{"status", "png", "csv", "window", "band", "runs": [...], "exact_reward", "exact"}``: per
    run the mean reward of the last ``WINDOW`` episodes, ``settled_step``, the step whose weights were
    kept, the kept policy's allocation ``alloc[m][i]`` at nominal conditions, its summed stage latency
    and gap to the bound; per model the exact allocator's (``exact_reference``). Each run keeps its own
    directory
    (``{model}-{algo}-s{seed}``: model.zip, curve.csv, curve.png, train.json).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = FIG6_STEPS if steps is None else steps
    seeds = FIG6_SEEDS if seeds is None else tuple(seeds)
    curves: dict[tuple[str, str], list[list[dict[str, float]]]] = {}
    runs = []
    for model in models:
        for algo in FIG6_ALGOS:
            for seed in seeds:
                run_dir = out / f"{model}-{algo}-s{seed}"
                if progress is not None:
                    progress(f"fig6 {model} {algo} seed {seed}")
                summary = train(fig6_config(model, algo, steps, seed), run_dir)
                rows = _read(run_dir / "curve.csv")
                curves.setdefault((model, algo), []).append(rows)
                last = [r["reward"] for r in rows[-WINDOW:]]
                runs.append({"model": model, "algo": algo, "seed": seed, "steps": steps,
                             "final_reward": float(np.mean(last)) if last else None,
                             "settled_step": settled_step(rows),
                             "kept_step": summary["kept_step"], "latency_s": summary["latency_s"],
                             "gap": summary["gap"], "allocation": summary["allocation"],
                             "command": summary["command"]})
    png, table = out / "fig6.png", out / "fig6.csv"
    exact = {model: exact_reference(model) for model in models}
    best = {model: ref["reward"] for model, ref in exact.items()}
    plot_fig6(curves, png, best)
    with table.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", "algo", "seed", "episode", "step", "reward", "latency_s"])
        for (model, algo), per_seed in curves.items():
            for seed, rows in zip(seeds, per_seed, strict=True):
                writer.writerows([model, algo, seed, int(r["episode"]), int(r["step"]), r["reward"],
                                  r["latency_s"]] for r in rows)
    return {"status": "done", "png": str(png), "csv": str(table), "window": WINDOW, "band": SETTLE_BAND,
            "runs": runs, "exact_reward": best, "exact": exact}
