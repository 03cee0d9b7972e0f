"""The ``edgesplit`` command (typer).

Each area registers its own commands from a ``commands.py`` module (``edgesplit.<area>.commands`` for
the core, ``services.<name>.commands`` for the services), so this file only wires them together.
Every command that reports numbers has ``--json`` (one JSON object on stdout, nothing else) and shows
progress on stderr. Domain errors exit with status 2 and a one-line message.
"""

from __future__ import annotations

import importlib
import sys

import typer

from edgesplit.errors import EdgesplitError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="edgesplit: exact model-parallel CNN inference across edge servers.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (timings live here, never in tests).")
app.add_typer(bench_app, name="bench")

# Modules that define ``register(app, bench_app)``; a missing one is skipped so areas land independently.
COMMAND_MODULES = (
    "edgesplit.split.commands",
    "edgesplit.plan.commands",
    "edgesplit.alloc.commands",
    "edgesplit.sim.commands",
    "services.executor.commands",
    "services.orchestrator.commands",
    "services.allocator.commands",
    "services.commands",
    "services.testbed.commands",
    "loadtest.commands",
)


_registered: list[str] = []


def _register_all() -> None:
    """Import every area's commands, once per process."""
    if _registered:
        return
    _registered.append("done")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # the module exists but one of its imports is missing: a real error
                raise
            continue
        module.register(app, bench_app)


def main() -> None:
    """Entry point: run the app, turning domain errors into one line on stderr and exit status 2."""
    _register_all()
    try:
        app(standalone_mode=False)
    except EdgesplitError as e:
        print(f"edgesplit: error: {e}", file=sys.stderr)
        sys.exit(2)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code)
    except typer.Abort:
        sys.exit(130)
    except Exception as e:
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
