"""CLI: ``edgesplit submit IMAGE --model M --priority P [--wait] [--json]`` (a client of the public API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from edgesplit.errors import InvalidInput


def _print_task(info: dict[str, Any]) -> None:
    console = Console()
    line = f"task {info['id']}: {info['status']} (model {info['model']}, priority {info['priority']})"
    if info.get("e2e_s") is not None:
        line += f", end-to-end {1000 * info['e2e_s']:.1f} ms, queued {1000 * (info['queue_s'] or 0):.1f} ms"
    console.print(line)
    if info.get("error"):
        console.print(f"error: {info['error']}")
    if info.get("top_k"):
        table = Table(title="top classes")
        for col in ("class", "probability", "logit"):
            table.add_column(col, justify="right")
        for t in info["top_k"]:
            table.add_row(str(t["class"]), f"{t['prob']:.4f}", f"{t['logit']:.4f}")
        console.print(table)
    stages = info.get("timings", {}).get("stages", [])
    if stages:
        table = Table(title="stages")
        for col in ("stage", "layers", "strategy", "servers", "ms"):
            table.add_column(col, justify="right")
        for st in stages:
            table.add_row(str(st["stage"]), f"{st['layers'][0]}-{st['layers'][1]}", st["strategy"],
                          ",".join(map(str, st["servers"])), f"{1000 * (st['end'] - st['start']):.1f}")
        console.print(table)


def submit(
    image: Path = typer.Argument(..., help="a PNG or JPEG image, or an .npy array of the input shape"),
    model: str = typer.Option("alexnet-paper", help="deployed model name"),
    priority: int = typer.Option(5, help="1 is the most urgent"),
    timeout: float | None = typer.Option(None, help="seconds before the task expires"),
    wait: bool = typer.Option(False, "--wait", help="wait for the result"),
    url: str = typer.Option("http://127.0.0.1:8080", envvar="EDGESPLIT_URL", help="orchestrator URL"),
    token: str | None = typer.Option(None, envvar="EDGESPLIT_API_TOKEN", help="API token, if required"),
    idempotency_key: str | None = typer.Option(None, help="repeat-safe submit key"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Submit one image task to a running orchestrator (started by edgesplit up)."""
    from services.orchestrator.client import OrchestratorClient

    if not image.is_file():
        raise InvalidInput(f"{image} is not a file")
    with OrchestratorClient(url, token) as oc:
        tid = oc.submit(image.read_bytes(), model, priority, timeout, idempotency_key)
        info = oc.result(tid, wait_s=120.0, logits=False) if wait else oc.get(tid, logits=False)
    if as_json:
        print(json.dumps(info))
    else:
        _print_task(info)
    if wait and info["status"] != "done":
        raise typer.Exit(1)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command()(submit)
