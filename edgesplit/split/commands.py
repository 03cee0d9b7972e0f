"""CLI: ``edgesplit verify`` (exactness of every strategy) and ``edgesplit accuracy`` (digits)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import typer
from rich.console import Console
from rich.table import Table

from edgesplit.errors import InvalidPlan
from edgesplit.models.build import load_model
from edgesplit.models.zoo import resolve_spec
from edgesplit.split.runner import MODES, split_forward

err = Console(stderr=True)


def verify_model(model: str | None, model_file: Path | None, servers: int, strategies: list[str],
                 seed: int, batch: int = 1, tol: float = 1e-5) -> dict[str, Any]:
    """Split inference vs the unsplit edge module on a seeded random input; errors per strategy."""
    spec = resolve_spec(model, model_file)
    torch.manual_seed(seed)
    module = load_model(spec, seed=seed)
    x = torch.randn(batch, *spec.input, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = module[: spec.n_edge](x)
    scale = float(ref.abs().max()) or 1.0
    results = []
    for mode in strategies:
        run = split_forward(module, spec, mode, servers, x)  # type: ignore[arg-type]
        abs_err = float((run.output - ref).abs().max())
        row: dict[str, Any] = {"strategy": mode, "servers": servers, "max_abs_err": abs_err,
                               "max_rel_err": abs_err / scale, "ok": abs_err / scale <= tol}
        if max(run.servers_used) < servers:
            row["servers_used"] = run.servers_used
            row["note"] = (f"kernel-rows splits a conv into at most its kernel height; groups used "
                           f"{run.servers_used} servers")
        results.append(row)
    return {"model": spec.name, "seed": seed, "tolerance": tol, "results": results}


def _parse_strategies(strategy: str) -> list[str]:
    if strategy == "all":
        return list(MODES)
    chosen = [s.strip() for s in strategy.split(",")]
    bad = [s for s in chosen if s not in MODES]
    if bad:
        raise InvalidPlan(f"unknown strategy {bad[0]!r}; expected all or one of {', '.join(MODES)}")
    return chosen


def verify(
    model: str = typer.Option("alexnet-paper", help="built-in model name"),
    model_file: Path | None = typer.Option(None, help="a model spec JSON file (overrides --model)"),
    servers: int = typer.Option(3, help="number of servers to split across"),
    strategy: str = typer.Option("all", help="all, or a comma list of " + ", ".join(MODES)),
    seed: int = typer.Option(0, help="seed of the weights and the input"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Check that split inference equals the unsplit model (max relative error <= 1e-5)."""
    report = verify_model(model, model_file, servers, _parse_strategies(strategy), seed)
    if as_json:
        print(json.dumps(report))
    else:
        table = Table(title=f"{report['model']}: split vs unsplit, {servers} servers")
        for col in ("strategy", "max_abs_err", "max_rel_err", "ok", "note"):
            table.add_column(col)
        for r in report["results"]:
            table.add_row(r["strategy"], f"{r['max_abs_err']:.3g}", f"{r['max_rel_err']:.3g}",
                          "yes" if r["ok"] else "NO", r.get("note", ""))
        Console().print(table)
    if not all(r["ok"] for r in report["results"]):
        raise typer.Exit(1)


def accuracy(
    dataset: str = typer.Option("digits", help="only 'digits' (scikit-learn's bundled digits)"),
    servers: str = typer.Option("2,3,4,5,6,7,8", help="comma list of server counts"),
    retrain: bool = typer.Option(False, help="retrain digits-cnn (seed 0) and rewrite the shipped weights"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Test accuracy of digits-cnn unsplit and split under every strategy; agreement must be 100%."""
    from edgesplit.models.digits import digits_data, digits_model
    from edgesplit.models.zoo import get_spec

    if dataset != "digits":
        raise InvalidPlan(f"unknown dataset {dataset!r}; expected digits")
    counts = [int(s) for s in servers.split(",")]
    spec = get_spec("digits-cnn")
    module = digits_model(retrain=retrain)
    data = digits_data()
    with torch.no_grad():
        ref_pred = module(data.x_test).argmax(1)
    cloud = module[spec.n_edge :]
    rows: list[dict[str, Any]] = []
    for k in counts:
        for mode in MODES:
            with torch.no_grad():
                pred = cloud(split_forward(module, spec, mode, k, data.x_test).output).argmax(1)
            rows.append({"strategy": mode, "servers": k,
                         "accuracy": float((pred == data.y_test).float().mean()),
                         "agreement": float((pred == ref_pred).float().mean())})
    report = {"dataset": dataset, "model": spec.name, "test_samples": len(data.y_test),
              "unsplit_accuracy": float((ref_pred == data.y_test).float().mean()), "results": rows,
              "min_agreement": min(r["agreement"] for r in rows)}
    if as_json:
        print(json.dumps(report))
    else:
        err.print(f"unsplit accuracy {report['unsplit_accuracy']:.4f} on {len(data.y_test)} test digits")
        table = Table(title="split inference on digits")
        for col in ("strategy", "servers", "accuracy", "agreement"):
            table.add_column(col)
        for r in rows:
            table.add_row(str(r["strategy"]), str(r["servers"]), f"{r['accuracy']:.4f}",
                          f"{r['agreement']:.2%}")
        Console().print(table)
    if report["min_agreement"] < 1.0:
        raise typer.Exit(1)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command()(verify)
    app.command()(accuracy)
