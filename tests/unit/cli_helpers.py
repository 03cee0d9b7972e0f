"""Run one area's typer commands in process (shared by the command tests of each area)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import typer
from typer.testing import CliRunner

Register = Callable[[typer.Typer, typer.Typer], None]


def command_app(register: Register) -> typer.Typer:
    """A root app with a ``bench`` sub-app, as ``edgesplit.cli`` builds it, holding one area's commands."""
    main = typer.Typer()
    bench = typer.Typer()
    main.add_typer(bench, name="bench")
    register(main, bench)
    return main


def cli_json(app: typer.Typer, *args: str) -> dict[str, Any]:
    """Invoke with ``--json``; the command must exit 0 and print one JSON object on stdout."""
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
