"""``edgesplit allocate`` / ``train-allocator`` / ``bench alloc``: JSON fields and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from cli_helpers import cli_json, command_app
from typer.testing import CliRunner

from edgesplit.alloc.commands import register
from edgesplit.errors import InvalidInput, ModelNotFound

FIELDS = {"policy", "objective", "latency_s", "optimum_s", "lower_bound_s", "gap", "allocation"}


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return command_app(register)


@pytest.mark.parametrize("objective", ["sum", "bottleneck"])
def test_allocate_exact_and_even(app: typer.Typer, objective: str) -> None:
    exact = cli_json(app, "allocate", "--model", "digits-cnn", "--policy", "exact", "--objective", objective)
    even = cli_json(app, "allocate", "--model", "digits-cnn", "--policy", "even", "--objective", objective)
    for out in (exact, even):
        assert set(out) >= FIELDS
        assert out["gap"] == pytest.approx(out["latency_s"] / out["lower_bound_s"] - 1)
        assert len(out["allocation"]) == 8 and all(sum(row) == 20 for row in out["allocation"])
    assert exact["latency_s"] <= even["latency_s"]
    assert even["lower_bound_s"] == exact["lower_bound_s"]
    assert exact["lower_bound_s"] <= exact["latency_s"]


def test_allocate_with_a_trained_policy(app: typer.Typer, tmp_path: Path) -> None:
    args = ["train-allocator", "--model", "digits-cnn", "--steps", "120", "--out", str(tmp_path), "--json"]
    CliRunner().invoke(app, args, catch_exceptions=False)
    out = cli_json(app, "allocate", "--model", "digits-cnn", "--policy", f"td3:{tmp_path}")
    assert out["policy"] == f"td3:{tmp_path}" and out["gap"] >= 0
    with pytest.raises(InvalidInput, match="trained with 'td3'"):
        CliRunner().invoke(app, ["allocate", "--model", "digits-cnn", "--policy", f"ddpg:{tmp_path}"],
                           catch_exceptions=False)


def test_unknown_policy_and_missing_shipped_policy_are_domain_errors(app: typer.Typer) -> None:
    with pytest.raises(InvalidInput, match="unknown policy 'greedy'"):
        CliRunner().invoke(app, ["allocate", "--model", "digits-cnn", "--policy", "greedy"],
                           catch_exceptions=False)
    with pytest.raises(ModelNotFound, match="no shipped td3 policy"):
        CliRunner().invoke(app, ["allocate", "--model", "digits-cnn", "--policy", "td3"],
                           catch_exceptions=False)


def test_bench_alloc_json(app: typer.Typer) -> None:
    out = cli_json(app, "bench", "alloc", "--models", "digits-cnn", "--repeat", "1")
    assert len(out["cases"]) == 4
    assert all(c["gap"] >= 0 and c["seconds"] > 0 for c in out["cases"])


def test_bench_alloc_policy_prints_a_gap_per_held_out_draw(app: typer.Typer, tmp_path: Path) -> None:
    args = ["train-allocator", "--model", "digits-cnn", "--steps", "120", "--out", str(tmp_path), "--json"]
    CliRunner().invoke(app, args, catch_exceptions=False)
    out = cli_json(app, "bench", "alloc-policy", "--model", "digits-cnn", "--policy", f"td3:{tmp_path}",
                   "--draws", "2")
    assert [d["draw"] for d in out["draws"]] == [0, 1]
    assert out["draws"][0]["speed"] != out["draws"][1]["speed"]
    for d in out["draws"]:
        assert d["gap"] >= d["gap_to_exact"] >= -1e-9
    assert out["worst_gap"] == max(d["gap"] for d in out["draws"])
    exact = cli_json(app, "bench", "alloc-policy", "--model", "digits-cnn", "--policy", "exact",
                     "--draws", "2")
    assert [d["speed"] for d in exact["draws"]] == [d["speed"] for d in out["draws"]]  # the same draws
    assert all(d["gap_to_exact"] == 0 for d in exact["draws"])


def test_bench_alloc_sweep_judges_every_seed(app: typer.Typer, tmp_path: Path) -> None:
    out = cli_json(app, "bench", "alloc-sweep", "--out", str(tmp_path), "--models", "digits-cnn", "--algos",
                   "td3", "--seeds", "0,1", "--steps", "60", "--draws", "1")
    (row,) = out["summary"]
    assert row["model"] == "digits-cnn" and row["seeds"] == [0, 1]
    assert row["seed_worst_gap"] >= row["seed_median_gap"] >= 0
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert {p.name for p in tmp_path.iterdir()} >= {"digits-cnn-td3-s0", "digits-cnn-td3-s1", "sweep.json"}
    again = cli_json(app, "bench", "alloc-sweep", "--out", str(tmp_path), "--rejudge")
    assert again["summary"] == out["summary"]  # same draws, same bound: the stored latencies judge the same
    with pytest.raises(InvalidInput, match="no sweep results"):
        CliRunner().invoke(app, ["bench", "alloc-sweep", "--out", str(tmp_path / "none"), "--rejudge"],
                           catch_exceptions=False)


def test_an_unknown_algorithm_is_refused_before_training_starts(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train-allocator", "--algo", "sac", "--model", "alexnet-paper",
                                      "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, InvalidInput) and "unknown algorithm 'sac'" in str(result.exception)
    assert "0/10000" not in result.output  # no progress bar was started
    assert not (tmp_path / "run").exists()
