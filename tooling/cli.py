"""The ``edgesplit`` command: the core's commands (:mod:`edgesplit.cli`) plus the services', the local
stack's, the testbed's and the load test's, each area's ``register(app, bench_app)`` imported here.
"""

from __future__ import annotations

from edgesplit import cli as core
from loadtest import commands as loadtest_commands
from tooling.commands import allocator as allocator_commands
from tooling.commands import executor as executor_commands
from tooling.commands import orchestrator as orchestrator_commands
from tooling.commands import stack as stack_commands
from tooling.testbed import commands as testbed_commands

AREAS: tuple[core.Register, ...] = (
    *core.CORE, executor_commands.register, orchestrator_commands.register, allocator_commands.register,
    stack_commands.register, testbed_commands.register, loadtest_commands.register)

app = core.app


def main() -> None:
    """Entry point of the installed ``edgesplit`` command."""
    core.register_all(AREAS)
    core.run()


if __name__ == "__main__":
    main()
