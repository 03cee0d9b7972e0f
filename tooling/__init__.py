"""Tools around edgesplit, kept apart from the code that runs in a pod: the ``edgesplit`` command's
wiring (``cli``), the launchers (``proc``; ``stack``, the local stack; ``testbed``, the stack on
emulated hosts), demo workloads (``workload``), the echo baseline, the benchmarks (``executor_bench``,
``allocator_bench``, ``e2e_torch``) and the commands of the services and the stack (``commands``).

Nothing under ``services/`` that a pod runs imports this package (``tests/unit/test_pod_imports.py``).
"""
