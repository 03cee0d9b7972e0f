"""The seed sweep behind the shipped policies: train each (model, algo, seed), judge it on held-out draws.

``sweep`` trains ``train.TrainConfig(model, algo, seed, steps)`` (the shipped recipe: speed-aware
observation, ``dithered`` action, best weights kept on validation draws) for every combination, judges
each kept policy on the ``heldout`` draws, and writes into ``out``: one training directory per run
(``{model}-{algo}-s{seed}``), ``sweep.json`` (per run: the command, the CPU seconds, the per-draw
gaps and their median and worst; per (model, algo): the median and worst over seeds of the runs'
median gaps), and ``curves.png`` (one panel per model: each run's episode reward against steps,
TD3 and DDPG; this is the re-run of the paper's fig. 6 with the shipped training).
``sweep.json`` is rewritten after every run, so a sweep cut short keeps what it finished.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesplit.alloc.cost import AllocSplit
from edgesplit.alloc.heldout import HELDOUT_DRAWS, HELDOUT_SEED, heldout_draws, judge, reference, summarise
from edgesplit.alloc.train import Algo, TrainConfig, smooth, train

WINDOW = 50


def _read_curve(path: Path) -> list[dict[str, float]]:
    with path.open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def run_one(config: TrainConfig, out: Path, draws: int = HELDOUT_DRAWS) -> dict[str, Any]:
    """Train one configuration into ``out`` and judge the kept policy on ``draws`` held-out draws."""
    from edgesplit.alloc.policy import load_policy

    started = time.process_time()
    summary = train(config, out, evaluate_policy=False)
    cpu_s = time.process_time() - started
    policy = load_policy(out, config.algo)
    judged = judge(policy, heldout_draws(int(policy.agent.action_space.shape[0]), draws))
    return {"model": config.model, "algo": config.algo, "seed": config.seed, "steps": config.steps,
            "command": summary["command"], "kept_step": summary["kept_step"], "train_cpu_s": cpu_s,
            **{k: v for k, v in judged.items() if k not in ("model", "policy")}}


def aggregate(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, algo): the median and worst over seeds of each run's median gap (both gaps)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["algo"]), []).append(r)
    out = []
    for (model, algo), rs in groups.items():
        row: dict[str, Any] = {"model": model, "algo": algo, "seeds": [r["seed"] for r in rs]}
        for key in ("gap", "gap_to_exact"):
            medians = [r[f"median_{key}"] for r in rs]
            row[f"seed_median_{key}"] = float(np.median(medians))
            row[f"seed_worst_{key}"] = float(np.max(medians))
            row[f"worst_draw_{key}"] = float(max(r[f"worst_{key}"] for r in rs))
        out.append(row)
    return out


def rejudge(result: dict[str, Any], scenario: str = "paper", scenario_seed: int = 0,
            split: AllocSplit = "edgesplit") -> dict[str, Any]:
    """``result`` (a ``sweep.json``) with every draw's exact value and certified bound recomputed from
    the stored per-draw latencies, without training or running a policy again (e.g. after the bound
    got tighter). The draws are the held-out draws of ``result["heldout_seed"]`` on the scenario."""
    from edgesplit.plan.cluster import resolve_cluster

    nominal = resolve_cluster(scenario, seed=scenario_seed).servers
    draws = heldout_draws(len(nominal), int(result["draws"]), int(result.get("heldout_seed", HELDOUT_SEED)))
    runs = []
    for run in result["runs"]:
        rows = []
        for row in run["draws"]:
            _, exact_s, bound_s = reference(run["model"], draws[row["draw"]].servers(nominal), split)
            latency = float(row["latency_s"])
            rows.append({**row, "exact_s": exact_s, "lower_bound_s": bound_s, "gap": latency / bound_s - 1,
                         "gap_to_exact": latency / exact_s - 1, "exact_gap": exact_s / bound_s - 1})
        runs.append({**run, "draws": rows, **summarise(rows)})
    return {**result, "runs": runs, "summary": aggregate(runs)}


def rejudge_file(path: Path) -> dict[str, Any]:
    """``rejudge`` the sweep file at ``path`` in place; InvalidInput if there is none."""
    from edgesplit.errors import InvalidInput

    if not path.is_file():
        raise InvalidInput(f"no sweep results at {path}: run the sweep first (without --rejudge)")
    result = rejudge(json.loads(path.read_text()))
    path.write_text(json.dumps(result, indent=1))
    return result


def plot_sweep(out: Path, runs: Sequence[dict[str, Any]], path: Path) -> None:
    """One panel per model: every run's moving-average episode reward (TD3 solid, DDPG dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in runs))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.8), squeeze=False)
    colours = {"td3": "tab:blue", "ddpg": "tab:orange"}
    for ax, model in zip(axes[0], models, strict=True):
        seen: set[str] = set()
        for r in runs:
            if r["model"] != model:
                continue
            rows = _read_curve(out / f"{model}-{r['algo']}-s{r['seed']}" / "curve.csv")
            label = None if r["algo"] in seen else r["algo"].upper()
            seen.add(r["algo"])
            ax.plot([x["step"] for x in rows], smooth([x["reward"] for x in rows], WINDOW), label=label,
                    color=colours.get(r["algo"]), linestyle="-" if r["algo"] == "td3" else "--", alpha=0.7)
        ax.axhline(-1.0, color="grey", linestyle=":", label="even allocation")
        ax.set_title(model)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"episode reward (moving avg. {WINDOW})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Shipped training, one line per seed (reward = -latency / even allocation's)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def sweep(out: str | Path, models: Sequence[str], algos: Sequence[Algo], seeds: Sequence[int],
          steps: dict[str, int] | int, draws: int = HELDOUT_DRAWS,
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train and judge every (algo, model, seed), algorithms outermost (module docstring)."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    for algo in algos:
        for seed in seeds:
            for model in models:
                n = steps if isinstance(steps, int) else steps[model]
                if progress is not None:
                    progress(f"{model} {algo} seed {seed}: {n} steps")
                config = TrainConfig(model=model, algo=algo, seed=seed, steps=n)
                runs.append(run_one(config, root / f"{model}-{algo}-s{seed}", draws))
                result = {"draws": draws, "runs": runs, "summary": aggregate(runs)}
                (root / "sweep.json").write_text(json.dumps(result, indent=1))
                plot_sweep(root, runs, root / "curves.png")
    return result
