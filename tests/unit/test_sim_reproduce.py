"""fig. 9 by real split inference, ``edgesplit reproduce all --quick`` (and the docs' structure against
it) and ``edgesplit simulate``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from edgesplit.models.digits import digits_data, digits_model
from edgesplit.models.zoo import get_spec
from edgesplit.sim.accuracy import EXACT, evaluate
from edgesplit.sim.run import SimRequest, run_simulation

CLI = [sys.executable, "-c", "from edgesplit.cli import main; main()"]
ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> dict[str, object]:
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout)


def test_exact_splits_agree_with_the_unsplit_model_and_the_naive_split_does_not() -> None:
    torch.set_num_threads(1)
    data = digits_data(0)
    runs = [(m, k) for m in EXACT for k in (2, 3, 8)] + [("naive-rows", 8), ("naive-coedge", 4)]
    rows = evaluate(digits_model(), get_spec("digits-cnn"), data.x_test[:200], data.y_test[:200],
                    runs, "digits")  # type: ignore[arg-type]
    for r in rows:
        if r["exact"]:
            assert r["agreement"] == 1.0, r
            assert r["accuracy_loss"] == 0.0, r
        else:
            assert r["agreement"] < 1.0, r
            assert r["accuracy_loss"] > 0.0, r
    assert rows[0]["unsplit_accuracy"] > 0.9


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_reproduce_all_quick_writes_every_figure(tmp_path: Path) -> None:
    summary = run_cli("reproduce", "all", "--quick", "--out", str(tmp_path), "--json")
    for name in ("fig6", "fig7", "fig8", "fig9", "compare"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 200_000
    fig7 = _csv(tmp_path / "fig7.csv")
    assert len(fig7) == 2 * 3 * 4  # 2 CNNs x threads (1, 5, 20) x 4 methods
    assert {r["method"] for r in fig7} == {"No Split", "DADS", "Ours (paper)", "Ours (edgesplit)"}
    fig8 = _csv(tmp_path / "fig8.csv")
    assert len(fig8) == 2 * 6 * 4 and {r["tasks"] for r in fig8} == {"1", "2", "4", "6", "8", "10"}
    fig9 = _csv(tmp_path / "fig9.csv")
    assert {r["dataset"] for r in fig9} == {"digits", "random"}
    for r in fig9:
        assert (float(r["agreement"]) == 1.0) == (r["exact"] == "True"), r
    assert len(_csv(tmp_path / "compare.csv")) == 2 * 2 * 2  # scenarios x CNNs x (ours, ours-paper)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["fig7"] == summary["fig7"]
    alex = saved["fig7"]["alexnet-paper"]["at_1_thread_ms"]
    assert abs(alex["No Split"] - 38.0) / 38.0 < 0.05
    for key, row in saved["compare"].items():
        assert row["ours_ms"] <= row["ours_paper_ms"] * (1 + 1e-9), key
        if key.startswith("edge-1g"):
            assert row["speedup"] >= 2.0, key
    assert saved["fig6"]["status"] == "done"
    assert {(r["model"], r["algo"]) for r in saved["fig6"]["runs"]} == {
        (m, a) for m in ("alexnet-paper", "vgg16-paper") for a in ("td3", "ddpg")}
    assert set(saved["timing"]) == {"fig6", "fig7", "fig8", "fig9", "compare", "sensitivity", "all"}
    assert saved["sensitivity"]["fig6_available"]
    # the committed docs have the structure of what this run renders (numbers masked): CI's drift check
    check = subprocess.run([*CLI, "reproduce", "report", "--out", str(tmp_path), "--check", "--structure",
                            "--root", str(ROOT)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr


def test_simulate_is_deterministic_for_a_seed_and_the_cli_reports_the_same_run() -> None:
    req = SimRequest(models=("alexnet-paper",), mode="ours-paper", tasks=30, rate=400.0, priorities=3,
                     link_spread=0.1, seed=5)
    a, _ = run_simulation(req)
    b, _ = run_simulation(req)
    c, _ = run_simulation(replace(req, seed=6))
    assert a == b
    assert a != c
    assert a["pipeline"] == "lockstep"
    report = a["models"]["alexnet-paper"]
    assert report["summary"]["tasks"] == 30
    assert len(report["summary"]["stages"]) == len(report["stages"]) == 5
    cli = run_cli("simulate", "--model", "alexnet-paper", "--mode", "ours-paper", "--tasks", "30", "--rate",
                  "400", "--priorities", "3", "--link-spread", "0.1", "--seed", "5", "--json")
    assert cli == json.loads(json.dumps(a))


def test_two_cnns_share_the_servers_by_flops_share() -> None:
    report, result = run_simulation(SimRequest(models=("alexnet-paper", "vgg16-paper"), mode="ours-paper",
                                               tasks=3, priorities=1))
    assert {t.model for t in result.tasks} == {"alexnet-paper", "vgg16-paper"}
    for model, zone in (("alexnet-paper", 5), ("vgg16-paper", 15)):  # 20 threads by edge FLOPs, >= 1 per conv
        stages = report["models"][model]["stages"]
        for server in range(8):
            used = sum(t for st in stages for m, t in zip(st["servers"], st["threads"], strict=True)
                       if m == server)
            assert used <= zone
    assert "sub-zones:" in report["models"]["alexnet-paper"]["notes"][0]


def test_progress_reports_finished_tasks_without_changing_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """``simulate``'s progress bar (long runs): the count rises to every task, and stepping the
    simulation for it gives the same report as running it whole."""
    from edgesplit.sim import engine

    monkeypatch.setattr(engine, "PROGRESS_EVERY", 50)
    req = SimRequest(models=("alexnet-paper",), mode="ours", tasks=60, rate=300.0, priorities=3, seed=7)
    seen: list[int] = []
    stepped, _ = run_simulation(req, seen.append)
    whole, _ = run_simulation(req)
    assert stepped == whole
    assert len(seen) > 2 and seen == sorted(seen) and seen[-1] == 60
