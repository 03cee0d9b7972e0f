"""The reproduction report: the docs' generated blocks, the paper's quotations and the stated conclusions
agree with ``docs/reproduction/summary.json`` (the structure of a ``--quick`` run is checked by
``test_sim_reproduce.py``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from edgesplit.errors import InvalidInput
from edgesplit.sim.docs import DOCS, SUMMARY, TESTBED, blocks_in, check_report, fill, structure, write_report
from edgesplit.sim.report import PAPER, VOLATILE, render, render_testbed, same_plan_modes

ROOT = Path(__file__).resolve().parents[2]
PAPER_DIR = ROOT.parent / "shared" / "paper"


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    return json.loads((ROOT / SUMMARY).read_text())


def _paper_text() -> str:
    files = sorted(PAPER_DIR.glob("*.txt")) if PAPER_DIR.is_dir() else []
    if not files:
        pytest.skip(f"the paper's text is not at {PAPER_DIR}")
    return " ".join(" ".join(f.read_text() for f in files).split())


def test_every_generated_block_in_the_docs_is_what_the_committed_summary_renders(
        summary: dict[str, Any]) -> None:
    assert not summary["quick"]
    assert check_report(ROOT, summary, skip=frozenset()) == []


def test_the_check_finds_a_changed_number_and_ignores_run_times(summary: dict[str, Any],
                                                                tmp_path: Path) -> None:
    _copy_docs(tmp_path)
    changed = json.loads(json.dumps(summary))
    changed["fig7"]["vgg16-paper"]["at_1_thread_ms"]["DADS"] += 1.0
    changed["timing"]["all"]["wall_s"] += 100.0
    problems = check_report(tmp_path, changed)
    assert problems and all("'fig7'" in p or "'model-checks'" in p for p in problems), problems
    assert check_report(tmp_path, changed, structure_only=True) == []
    assert "runtime" in VOLATILE
    changed["fig6"]["runs"].pop()  # a run fewer: a row fewer, which the structure check sees
    assert [p for p in check_report(tmp_path, changed, structure_only=True) if "'fig6'" in p]


def _copy_docs(tmp_path: Path, testbed: bool = True) -> None:
    """The docs, the summary and (``testbed``, when committed) the testbed measurement."""
    extra = [str(TESTBED)] if testbed and (ROOT / TESTBED).exists() else []
    for doc in (*DOCS, str(SUMMARY), *extra):
        (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / doc).write_text((ROOT / doc).read_text())


def test_a_testbed_file_is_rendered_into_both_docs_from_the_committed_summary(tmp_path: Path) -> None:
    _copy_docs(tmp_path, testbed=False)
    (tmp_path / TESTBED).parent.mkdir(parents=True)
    (tmp_path / TESTBED).write_text(json.dumps({"points": [
        {"model": "vgg16-paper", "hosts": 8, "mode": "split", "measured_ms": 90.0, "predicted_ms": 100.0,
         "throughput_per_s": 9.5}], "machine": "x"}))
    summary = json.loads((tmp_path / SUMMARY).read_text())
    stale = "block 'testbed' differs from what the summary renders"
    expected = [f"docs/{doc}.md: {stale}" for doc in ("REPRODUCTION", "BENCHMARKS")]
    assert check_report(tmp_path, summary) == expected
    changed = write_report(tmp_path, tmp_path / SUMMARY.parent)
    assert changed == ["docs/REPRODUCTION.md", "docs/BENCHMARKS.md"]
    row = "| vgg16-paper | 8 | split | 90.00 | 100.0 | +11.1% | 9.5 | - |"
    for doc in changed:
        assert row in blocks_in((tmp_path / doc).read_text())["testbed"]
    assert check_report(tmp_path, summary) == []


def test_fill_replaces_only_the_named_block_and_refuses_unknown_names() -> None:
    text = "a\n<!-- generated:x -->\nold\n<!-- /generated:x -->\nb 1.5\n"
    assert fill(text, {"x": "new 2.0"}) == "a\n<!-- generated:x -->\nnew 2.0\n<!-- /generated:x -->\nb 1.5\n"
    assert blocks_in(fill(text, {"x": "new"})) == {"x": "new"}
    with pytest.raises(InvalidInput, match="unknown generated block 'x'"):
        fill(text, {"y": ""})
    assert structure("| 3.17 | 12.15x | never | step 9500 |") == "| # | #x | # | step # |"


def test_the_testbed_block_says_when_there_is_no_measurement_and_renders_points() -> None:
    assert "Not measured yet" in render_testbed(None)
    point = {"model": "alexnet-paper", "hosts": 3, "mode": "split", "measured_ms": 55.0, "predicted_ms": 50.0,
             "throughput_per_s": 12.34}
    table = render_testbed({"points": [point]})
    assert "| alexnet-paper | 3 | split | 55.00 | 50.00 | -9.1% | 12.3 | - |" in table
    summary = {"median_abs_error": 0.091, "max_abs_error": 0.2,
               "ratios": {"alexnet-paper@8": {"no-split": 3.5}}}
    text = render_testbed({"points": [point], "summary": summary})
    assert "median 9.1%, worst 20.0%" in text and "alexnet-paper, 8 hosts: no-split 3.50x" in text


def test_modes_serving_edgesplits_plan_are_named_as_ties() -> None:
    """DADS and edgesplit both sending the whole model to the cloud (route []) serve one plan: the block
    says their ratio is a tie; a mode with other stages, or a point with no route recorded, is not named."""
    def point(mode: str, ms: float, route: list[dict[str, object]] | None) -> dict[str, object]:
        return {"model": "alexnet-paper", "hosts": 8, "mode": mode, "measured_ms": ms, "predicted_ms": ms,
                "route": route}
    split = [{"layers": [0, 10], "strategy": "rows", "servers": [0]}]
    points = [point("edgesplit", 100.7, []), point("dads", 99.9, []), point("no-split", 219.9, split),
              point("paper", 129.6, None)]
    assert same_plan_modes(points) == {"alexnet-paper@8": ["dads"]}
    summary = {"median_abs_error": 0.05, "max_abs_error": 0.2,
               "ratios": {"alexnet-paper@8": {"dads": 0.992, "no-split": 2.18, "paper": 1.29}}}
    text = render_testbed({"points": points, "summary": summary})
    assert "(dads served the same plan as edgesplit there" in text and "no-split served" not in text


def test_every_quotation_of_the_paper_is_its_wording() -> None:
    paper = _paper_text()
    for key, quote in PAPER.items():
        assert " ".join(quote.split()) in paper, key
    text = (ROOT / "docs/REPRODUCTION.md").read_text()
    for body in blocks_in(text).values():
        text = text.replace(body, "")
    quotes = [" ".join(q.split()) for q in re.findall(r'"([^"]*)"', text) if len(q) >= 20]
    assert quotes
    for q in quotes:
        assert q in paper, q


def test_ratios_are_plain_times(summary: dict[str, Any]) -> None:
    a = summary["fig7"]["alexnet-paper"]
    ms = a["at_1_thread_ms"]
    for b in ("No Split", "DADS"):
        assert a["times_ours_paper"][b] == pytest.approx(ms[b] / ms["Ours (paper)"], abs=0.01)
    ours = re.sub(r'"[^"]*"', "", "".join(render(summary).values()))  # the paper's words removed
    assert "times higher" not in ours and "time higher" not in ours


def test_fig6_conclusions_stated_in_the_docs_hold(summary: dict[str, Any]) -> None:
    runs = {(r["model"], r["algo"]): r for r in summary["fig6"]["runs"]}
    exact = summary["fig6"]["exact"]
    for model in ("alexnet-paper", "vgg16-paper"):
        td3, ddpg = runs[(model, "td3")], runs[(model, "ddpg")]
        assert abs(td3["final_reward"] - ddpg["final_reward"]) < 0.05  # "within a few hundredths"
        for r in (td3, ddpg):
            assert r["latency_s"] > 1.3 * exact[model]["latency_s"]  # "well above the exact allocator's"
    assert runs[("alexnet-paper", "td3")]["final_reward"] > runs[("alexnet-paper", "ddpg")]["final_reward"]
    assert runs[("vgg16-paper", "ddpg")]["final_reward"] > runs[("vgg16-paper", "td3")]["final_reward"]
    for algo in ("td3", "ddpg"):
        assert abs(runs[("alexnet-paper", algo)]["final_reward"] + 1) < 0.1  # "at about the even allocation"
        assert runs[("vgg16-paper", algo)]["final_reward"] < -1.0  # "on VGG-16 worse than it"
    settled = {key: r["settled_step"] for key, r in runs.items()}
    assert settled[("alexnet-paper", "ddpg")] < settled[("alexnet-paper", "td3")]  # DDPG earlier on AlexNet
    assert settled[("vgg16-paper", "ddpg")] == settled[("vgg16-paper", "td3")]  # the same step on VGG-16


def test_fig7_and_fig8_conclusions_stated_in_the_docs_hold(summary: dict[str, Any]) -> None:
    a, v = summary["fig7"]["alexnet-paper"], summary["fig7"]["vgg16-paper"]
    assert a["at_1_thread_ms"]["Ours (paper)"] < 5.0  # below both readings of the paper (5 and 8.5-9.5 ms)
    assert all(t is None or t > 5 for t in a["baseline_reaches_ours_paper_at_threads"].values())
    assert v["baseline_reaches_ours_paper_at_threads"] == {"No Split": 5, "DADS": 5}
    n_layers = max(a["dads_cut_at_threads"].values())
    assert next(int(t) for t, cut in a["dads_cut_at_threads"].items() if cut == n_layers) <= 5
    part = summary["compare"]["paper/alexnet-paper"]["breakdown"]["ours-paper"]
    cloud = part["parts_ms"]["cloud transfer"] + part["parts_ms"]["cloud compute"]
    assert cloud > 0.5 * part["latency_ms"]  # "the cloud uplink and FC layers are most of it"
    f8a, f8v = summary["fig8"]["alexnet-paper"], summary["fig8"]["vgg16-paper"]
    assert f8a["ours_paper_exceeds_dads_from_task"] is None or f8a["ours_paper_exceeds_dads_from_task"] > 6
    assert f8v["ours_paper_exceeds_dads_from_task"] != 6  # not the paper's 6th task
    for f8 in (f8a, f8v):
        first = f8["first_task_ms"]
        assert first["Ours (paper)"][-1] > first["Ours (paper)"][0]  # lockstep delays the urgent task
        assert len(set(first["Ours (edgesplit)"])) == 1  # async does not
        dads = dict(zip(f8["tasks"], f8["total_ms"]["DADS"], strict=True))
        assert len({dads[n] for n in dads if n <= 8}) == 1 and dads[10] > dads[1]  # flat while uplinks last


def test_sensitivity_conclusions_stated_in_the_docs_hold(summary: dict[str, Any]) -> None:
    sens = summary["sensitivity"]
    assert sens["fig6_available"]
    for model, variants in sens["threads"].items():
        exact = variants["exact allocator"]
        policies = [v for k, v in variants.items() if k != "exact allocator"]
        assert len(policies) == 2, model
        for v in policies:
            assert v["ours_paper_ms"] > exact["ours_paper_ms"]
            for b in ("No Split", "DADS"):
                assert 1.0 < v["times_ours_paper"][b] < exact["times_ours_paper"][b]  # falls, same direction
            never = 1 + max(summary["fig8"][model]["tasks"])
            exact_from = exact["ours_paper_exceeds_dads_from_task"] or never
            assert v["ours_paper_exceeds_dads_from_task"] <= exact_from
            for b in ("No Split", "DADS"):  # "the baselines reach it with fewer threads per task"
                assert v["baseline_reaches_ours_paper_at_threads"][b] < exact[
                    "baseline_reaches_ours_paper_at_threads"][b]
    assert sens["threads"]["vgg16-paper"]["exact allocator"]["baseline_reaches_ours_paper_at_threads"] == {
        "No Split": 5, "DADS": 5}
    for model, variants in sens["links"].items():
        mbps = variants["Mb/s"]
        assert mbps["times_ours_paper"]["DADS"] < 1.0, model  # paper's method slower than DADS at 1 thread
        assert variants["Gb/s (as written)"]["times_ours_paper"]["DADS"] > 1.0, model
        assert mbps["ours_ms"] < mbps["at_1_thread_ms"]["DADS"], model  # ours stays below DADS


def test_fig9_and_compare_conclusions_stated_in_the_docs_hold(summary: dict[str, Any]) -> None:
    d, r = summary["fig9"]["digits"], summary["fig9"]["random"]
    assert d["exact_min_agreement"] == r["exact_min_agreement"] == 1.0
    assert all(v > 0 for v in (*d["naive_loss_pct"].values(), *r["naive_loss_pct"].values()))
    assert d["naive_loss_pct"] != r["naive_loss_pct"]  # the naive losses depend on the data set
    c = summary["compare"]
    for key, row in c.items():
        assert row["speedup"] >= (2.0 if key.startswith("edge-1g") else 1.0), key
    vgg = c["paper/vgg16-paper"]
    assert vgg["edge_throughput_per_s"]["ours"] < vgg["edge_throughput_per_s"]["ours_paper"]
    for key in ("paper/alexnet-paper", "paper/vgg16-paper"):
        tp = c[key]["throughput_per_s"]
        assert tp["ours"] == pytest.approx(tp["ours_paper"], rel=0.05), key  # the uplink caps both
