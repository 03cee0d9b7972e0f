"""PNG plots of the reproduced figures (matplotlib, Agg backend, small files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TITLES = {"alexnet-paper": "AlexNet (table 2)", "vgg16-paper": "VGG-16 (table 3)"}
STYLE = {"No Split": ("tab:red", "s"), "DADS": ("tab:orange", "^"), "Ours (paper)": ("tab:blue", "o"),
         "Ours (edgesplit)": ("tab:green", "D")}


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _lines(rows: Sequence[dict[str, Any]], x: str, y: str, xlabel: str, ylabel: str, path: Path,
           log: bool = False) -> None:
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        mine = [r for r in rows if r["model"] == model]
        for method in dict.fromkeys(r["method"] for r in mine):
            pts = sorted((r[x], r[y]) for r in mine if r["method"] == method)
            color, marker = STYLE.get(method, ("black", "."))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=method,
                    markersize=4)
        ax.set_title(TITLES.get(model, model))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_fig7(rows: Sequence[dict[str, Any]], path: Path) -> None:
    _lines(rows, "threads", "latency_ms", "average threads per task (baselines)", "single-task latency (ms)",
           path, log=True)


def plot_fig8(rows: Sequence[dict[str, Any]], path: Path) -> None:
    _lines(rows, "tasks", "total_latency_ms", "number of tasks (1 thread each in the baselines)",
           "total latency = makespan (ms)", path, log=True)


def plot_fig9(rows: Sequence[dict[str, Any]], path: Path) -> None:
    def label(r: dict[str, Any]) -> str:
        return f"{r['method'].replace('naive-', 'naive' + chr(10))}\n{r['servers']} srv"

    labels = list(dict.fromkeys(label(r) for r in rows))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    width = 0.8 / len(datasets)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(labels)), 3.6))
    for j, ds in enumerate(datasets):
        loss = {label(r): 100 * r["accuracy_loss"] for r in rows if r["dataset"] == ds}
        xs = [i + (j - (len(datasets) - 1) / 2) * width for i in range(len(labels))]
        values = [loss.get(lab, 0.0) for lab in labels]
        ax.bar(xs, values, width, label=ds)
        for x, v in zip(xs, values, strict=True):
            ax.text(x, v + 1, f"{v:.0f}" if v >= 1 or v == 0 else f"{v:.1f}", ha="center", fontsize=6)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("accuracy loss (%)")
    ax.set_title("fig. 9: accuracy loss of split inference (exact splits: 0; naive zero padding: > 0)",
                 fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def parts(r: dict[str, Any]) -> dict[str, float]:
    """One task's time by part (ms): edge compute, edge transfer + wait, cloud transfer, cloud compute."""
    return {"edge compute": sum(s["compute_ms"] for s in r["stages"]),
            "edge transfer + wait": sum(s["stage_ms"] - s["compute_ms"] for s in r["stages"]),
            "cloud transfer": r["cloud_transfer_ms"], "cloud compute": r["cloud_compute_ms"]}


def plot_compare(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Per scenario and CNN, the single-task latency of each method stacked as edge compute, edge
    transfer and overhead, cloud transfer and cloud compute."""
    panels = list(dict.fromkeys((r["scenario"], r["model"]) for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.6), squeeze=False)
    colors = ("tab:blue", "tab:orange", "tab:purple", "tab:gray")
    for ax, (scen, model) in zip(axes[0], panels, strict=True):
        mine = [r for r in rows if (r["scenario"], r["model"]) == (scen, model)]
        bottom = [0.0] * len(mine)
        for (name, _), color in zip(parts(mine[0]).items(), colors, strict=True):
            values = [parts(r)[name] for r in mine]
            ax.bar(range(len(mine)), values, 0.6, bottom=bottom, label=name, color=color)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_xticks(range(len(mine)), [r["mode"] for r in mine], fontsize=8)
        ax.set_title(f"{scen}: {TITLES.get(model, model)}", fontsize=8)
        ax.set_ylabel("single-task latency (ms)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=6)
    _save(fig, path)
