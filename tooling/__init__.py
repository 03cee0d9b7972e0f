"""Tools around edgesplit, kept apart from the code that runs in a pod: the ``edgesplit`` command's
wiring (``cli``), process launchers (``proc``), demo workloads (``workload``), the echo baseline and
the benchmarks (``executor_bench``, ``allocator_bench``) and the services' commands (``commands``).

Nothing under ``services/`` that a pod runs imports this package (``tests/unit/test_pod_imports.py``).
"""
