"""The load test's pure parts: priority mixes, density steps, reading locust's CSV, the summary ratio."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loadtest.mix import DEFAULT_MIX, parse_mix, parse_users, step_at
from loadtest.report import summarize, write_csv
from loadtest.sweep import Row, SweepConfig, locust_command, read_stats

HEADER = ("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
          "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
          "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%")


def test_default_mix_is_10_30_60() -> None:
    assert parse_mix(DEFAULT_MIX) == pytest.approx({1: 0.1, 3: 0.3, 5: 0.6})
    assert parse_mix("2:1, 1:3,4:0") == {1: 0.75, 2: 0.25}


@pytest.mark.parametrize("bad", ["", "1", "0:5", "1:-1", "a:1", "1:1,1:2", "1:0"])
def test_bad_mix_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_mix(bad)


def test_users_and_steps() -> None:
    assert parse_users("1,2,4,8,16") == [1, 2, 4, 8, 16]
    with pytest.raises(ValueError):
        parse_users("1,0")
    steps = [1, 2, 4]
    assert [step_at(steps, 10.0, t) for t in (0.0, 9.9, 10.0, 29.9, 30.0)] == [1, 1, 2, 4, None]


def test_read_stats_takes_the_task_rows_and_fills_missing_priorities(tmp_path: Path) -> None:
    path = tmp_path / "x_stats.csv"
    path.write_text("\n".join([
        HEADER,
        "POST,POST /v1/tasks p1,9,0,13,14,10,18,30,1.9,0.0,13,14,15,15,18,18,18,18,18,18,18",
        "TASK,task p1,9,1,63,64,50,75,0,1.5,0.1,63,67,68,72,75,75,75,75,75,75,75",
        "TASK,task p5,91,0,66,70,38,192,0,19.45,0.0,66,74,80,82,89,100,160,190,190,190,190",
        ",Aggregated,109,1,49,46,2,192,10,22.8,0.1,49,61,66,70,80,89,100,120,190,190,190"]) + "\n")
    rows = read_stats(path, "task", [1, 3, 5], "split", 4, 0.5)
    assert rows[0] == Row("split", 4, 1, 9, 1, 63.0, 75.0, 75.0, 64.0, 1.5, 0.5)
    assert rows[1].requests == 0 and math.isnan(rows[1].p95_ms)
    assert (rows[2].priority, rows[2].p95_ms, rows[2].throughput_rps) == (5, 100.0, 19.45)


def test_summary_ratio_is_urgent_p95_at_highest_over_lowest_density(tmp_path: Path) -> None:
    cfg = SweepConfig(modes=("split", "dads"), users=(1, 16), out=tmp_path)
    rows = [Row(mode, u, p, 10, 0, 5.0, p95, 9.0, 6.0, 2.0, 0.1)
            for mode, u, p, p95 in [("split", 1, 1, 40.0), ("split", 16, 1, 70.0), ("split", 1, 5, 40.0),
                                    ("split", 16, 5, 900.0), ("dads", 1, 1, 30.0), ("dads", 16, 1, 300.0)]]
    write_csv(rows, tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_text().splitlines()[0].startswith("mode,users,priority,requests")
    s = summarize(rows, cfg, tmp_path / "s.csv", tmp_path / "s.png")
    assert s["modes"]["split"]["urgent_p95_ratio"] == 1.75
    assert s["modes"]["dads"]["urgent_p95_ratio"] == 10.0
    assert s["split_meets_target"] is True
    assert s["modes"]["split"]["throughput_rps"] == {"1": 4.0, "16": 4.0}


def test_locust_runs_headless_with_the_chosen_customer(tmp_path: Path) -> None:
    cfg = SweepConfig(api="v2", step_s=5)
    cmd = locust_command(cfg, "http://h:1", 8, tmp_path / "u8", tmp_path / "s.json")
    assert cmd[1:3] == ["-m", "locust"] and "--headless" in cmd and cmd[-1] == "V2Customer"
    assert cmd[cmd.index("-u") + 1] == "8" and cmd[cmd.index("-t") + 1] == "5s"


def test_csv_round_trip(tmp_path: Path) -> None:
    from loadtest.report import read_csv

    rows = [Row("split", 2, 1, 10, 0, 5.0, 7.5, 9.0, 6.25, 2.5, 0.5),
            Row("dads", 2, 3, 0, 0, math.nan, math.nan, math.nan, math.nan, 0.0, 0.5)]
    write_csv(rows, tmp_path / "s.csv")
    back = read_csv(tmp_path / "s.csv")
    assert back[0] == rows[0] and back[1][:5] == rows[1][:5] and math.isnan(back[1].p95_ms)
