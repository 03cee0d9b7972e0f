"""The core's ``edgesplit`` commands (typer): the app, its ``bench`` sub-app and the error handling.

Each area registers its own commands from a ``commands.py`` module (``edgesplit.<area>.commands`` for
the core). The core knows nothing of the services, so this module wires only the core's areas; the
installed ``edgesplit`` command is :mod:`tooling.cli`, which adds the services', the launchers' and the
benchmarks' commands to the same app (``python -m edgesplit.cli`` runs the core's alone).
Every command that reports numbers has ``--json`` (one JSON object on stdout, nothing else) and shows
progress on stderr. Domain errors exit with status 2 and a one-line message.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

import typer

from edgesplit.alloc import commands as alloc_commands
from edgesplit.errors import EdgesplitError
from edgesplit.plan import commands as plan_commands
from edgesplit.sim import commands as sim_commands
from edgesplit.split import commands as split_commands

Register = Callable[[typer.Typer, typer.Typer], None]

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="edgesplit: exact model-parallel CNN inference across edge servers.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (timings live here, never in tests).")
app.add_typer(bench_app, name="bench")

# each area's ``register(app, bench_app)``
CORE: tuple[Register, ...] = (split_commands.register, plan_commands.register, alloc_commands.register,
                              sim_commands.register)

_registered: set[Register] = set()


def register_all(areas: Sequence[Register]) -> None:
    """Add each area's commands to the app, once per process."""
    for register in areas:
        if register not in _registered:
            _registered.add(register)
            register(app, bench_app)


def _click_errors() -> tuple[type[Exception], ...]:
    """``ClickException`` of click and of the copy typer vendors (``typer._click``, typer >= 0.26),
    whichever are installed: typer raises its own copy's, which is not click's class."""
    kinds: list[type[Exception]] = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        try:
            kinds.append(importlib.import_module(module).ClickException)
        except ImportError:
            continue
    return tuple(kinds)


CLICK_ERRORS = _click_errors()


_terminated: list[int] = []  # SIGTERM received (``run``)


def _sigterm_as_interrupt(signum: int, _frame: FrameType | None) -> None:
    _terminated.append(signum)
    raise KeyboardInterrupt


def run() -> None:
    """Run the app, turning domain errors, and file-system errors on a named path (``--out`` naming a
    file, a folder without permission), into one line on stderr and exit status 2; a command's
    ``typer.Exit(code)`` is the process's exit status.

    SIGTERM (``kill``, ``timeout``, a supervisor) is handled as Ctrl-C: the command's cleanup runs (a
    stack's or a testbed's processes are stopped, a testbed's namespaces, links and cgroups removed)
    and a command it interrupted exits with status 143 (130 for Ctrl-C); one that stops on it as its
    normal end (``edgesplit up``) exits 0. Without this, a terminated ``edgesplit testbed up`` or
    ``bench`` left its services running and its hosts built.
    """
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        # outside standalone mode typer *returns* the code of a ``typer.Exit`` (and 130 for Ctrl-C)
        code = app(standalone_mode=False)
        if code == 130 and _terminated:
            code = 143
        if isinstance(code, int) and not isinstance(code, bool) and code != 0:
            sys.exit(code)
    except EdgesplitError as e:
        print(f"edgesplit: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a path the user gave (``--out`` naming a file, a folder without permission)
        if e.filename is None:
            raise
        where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
        what = ("exists and is not a folder (expected a folder to write into)"
                if isinstance(e, FileExistsError) else e.strerror or type(e).__name__)
        print(f"edgesplit: error: {where}: {what}", file=sys.stderr)
        sys.exit(2)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(143 if _terminated else 130)
    except CLICK_ERRORS as e:  # bad options or arguments: click's one-line usage error, status 2
        e.show()  # type: ignore[attr-defined]
        sys.exit(e.exit_code)  # type: ignore[attr-defined]


def main() -> None:
    """The core's commands only (``python -m edgesplit.cli``)."""
    register_all(CORE)
    run()


if __name__ == "__main__":
    main()
