"""The services' ``edgesplit`` commands: ``submit``/``status`` against an orchestrator and the
executor's and the allocator's benchmarks, each with ``register(app, bench_app)``."""
