"""The SimPy engine on hand-made workloads: ordering, priorities, aging, lockstep vs async, seeds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.errors import InvalidPlan
from edgesplit.sim.engine import SimConfig, simulate
from edgesplit.sim.records import TaskSpec, make_tasks
from edgesplit.sim.timing import CloudStep, Replicated, ServerStep, SplitPipeline, StageSteps


def compute_only(*seconds: float, cloud: CloudStep | None = None) -> SplitPipeline:
    """One server per stage, compute only: the textbook tandem queue."""
    stages = tuple(StageSteps(f"s{i}", (ServerStep(0, 0.0, s, 0.0),)) for i, s in enumerate(seconds))
    return SplitPipeline("m", stages, cloud)


def at_zero(n: int, priorities: list[int] | None = None) -> list[TaskSpec]:
    return make_tasks("m", n, priorities=priorities or list(range(1, n + 1)))


def test_async_and_lockstep_match_the_hand_computed_schedule() -> None:
    # stages 1 s, 3 s, 1 s; three tasks at t=0 in priority order A, B, C.
    wl = compute_only(1.0, 3.0, 1.0)
    asy = simulate({"m": wl}, at_zero(3), SimConfig(pipeline="async"))
    lock = simulate({"m": wl}, at_zero(3), SimConfig(pipeline="lockstep"))
    assert [t.end_s for t in asy.tasks] == pytest.approx([5.0, 8.0, 11.0])
    # lockstep ticks: [A0]=1, [A1,B0]=3, [A2,B1,C0]=3, [B2,C1]=3, [C2]=1; a task leaves at its tick's end
    assert [t.end_s for t in lock.tasks] == pytest.approx([7.0, 10.0, 11.0])
    assert [s.start_s for s in lock.tasks[1].stages] == pytest.approx([1.0, 4.0, 7.0])
    assert [s.start_s for s in asy.tasks[1].stages] == pytest.approx([1.0, 4.0, 7.0])
    assert lock.tasks[2].stages[0].start_s == pytest.approx(4.0)
    assert asy.tasks[2].stages[0].start_s == pytest.approx(2.0)


@given(st.lists(st.floats(0.01, 5.0), min_size=1, max_size=5), st.integers(1, 6))
@settings(max_examples=40, deadline=None)
def test_lockstep_never_finishes_a_task_earlier_than_async(stages: list[float], n: int) -> None:
    wl = compute_only(*stages, cloud=CloudStep(0.5, 0.25))
    asy = simulate({"m": wl}, at_zero(n), SimConfig(pipeline="async"))
    lock = simulate({"m": wl}, at_zero(n), SimConfig(pipeline="lockstep"))
    for a, b in zip(asy.tasks, lock.tasks, strict=True):
        assert b.end_s >= a.end_s - 1e-12
    # in lockstep every stage of every task starts at a tick boundary shared by all active stages
    starts = sorted({round(s.start_s, 9) for t in lock.tasks for s in t.stages})
    assert starts[0] == 0.0


def test_highest_priority_first_fifo_within_a_level() -> None:
    wl = compute_only(1.0)
    blocker = TaskSpec(0, "m", 9, 0.0)
    waiting = [TaskSpec(1, "m", 3, 0.1), TaskSpec(2, "m", 1, 0.2), TaskSpec(3, "m", 2, 0.3),
               TaskSpec(4, "m", 1, 0.4), TaskSpec(5, "m", 3, 0.5)]
    for mode in ("async", "lockstep"):
        res = simulate({"m": wl}, [blocker, *waiting], SimConfig(pipeline=mode))  # type: ignore[arg-type]
        order = [t.id for t in sorted(res.tasks, key=lambda t: t.admitted_s)]
        assert order == [0, 2, 4, 3, 1, 5], mode


def test_replicated_baseline_queues_by_priority_when_threads_run_out() -> None:
    wl = Replicated("m", threads=2, edge_s=(1.0,), cloud=(None,), zone=(3,))
    tasks = [TaskSpec(0, "m", 5, 0.0), TaskSpec(1, "m", 2, 0.1), TaskSpec(2, "m", 1, 0.2)]
    res = simulate({"m": wl}, tasks)
    assert [t.end_s for t in res.tasks] == pytest.approx([1.0, 3.0, 2.0])
    assert res.tasks[2].queue_wait_s == pytest.approx(0.8)


def test_aging_lets_an_old_low_priority_task_overtake() -> None:
    wl = compute_only(1.0)
    tasks = [TaskSpec(0, "m", 1, 0.0), TaskSpec(1, "m", 3, 0.0), TaskSpec(2, "m", 1, 0.5),
             TaskSpec(3, "m", 1, 0.9)]
    plain = simulate({"m": wl}, tasks)
    aged = simulate({"m": wl}, tasks, SimConfig(aging_s=0.2))
    # without aging the priority-3 task goes last; aged by 1 s (5 levels: -2) it passes task 2 (-1.5)
    assert [t.id for t in sorted(plain.tasks, key=lambda t: t.end_s)] == [0, 2, 3, 1]
    assert [t.id for t in sorted(aged.tasks, key=lambda t: t.end_s)] == [0, 1, 2, 3]


def test_aging_follows_the_serving_queue_not_whole_levels() -> None:
    # Issue 16: the simulator used to round aging down to whole levels and stop at 1
    # (max(1, p - floor(w / aging_s))), the Redis queue does neither (QueueOrder). Here, at t = 1 with
    # aging_s = 0.4, the old rule tied task 1 (3 - 2 levels) and task 2 (1, floored) at 1 and took the
    # older task 1; the queue's rule gives task 1 3 - 2.5 = 0.5 and task 2 1 - 1.25 = -0.25: task 2 first.
    wl = compute_only(1.0)
    tasks = [TaskSpec(0, "m", 1, 0.0), TaskSpec(1, "m", 3, 0.0), TaskSpec(2, "m", 1, 0.5),
             TaskSpec(3, "m", 1, 0.9)]
    aged = simulate({"m": wl}, tasks, SimConfig(aging_s=0.4))
    assert [t.id for t in sorted(aged.tasks, key=lambda t: t.end_s)] == [0, 2, 1, 3]


def test_links_are_shared_fifo_resources() -> None:
    # two single-server stages on the same server, 1 s on its down-link each: the link does 4 s of work
    stage = StageSteps("s", (ServerStep(0, 1.0, 0.0, 0.0),))
    wl = SplitPipeline("m", (stage, stage), None)
    res = simulate({"m": wl}, at_zero(2))
    assert [t.end_s for t in res.tasks] == pytest.approx([2.0, 4.0])
    assert res.tasks[1].stages[0].link_wait_s == pytest.approx(1.0)  # behind A's stage 1 (FIFO)
    cloud = SplitPipeline("m", (StageSteps("s", (ServerStep(0, 0.0, 0.1, 0.0),)),), CloudStep(1.0, 0.5))
    res = simulate({"m": cloud}, at_zero(3))
    assert [t.end_s for t in res.tasks] == pytest.approx([1.6, 2.6, 3.6])
    assert res.tasks[2].cloud is not None and res.tasks[2].cloud.start_s == pytest.approx(2.1)


def test_same_seed_same_run_other_seed_other_run() -> None:
    step = (ServerStep(0, 0.002, 0.01, 0.003), ServerStep(1, 0.001, 0.012, 0.002))
    wl = SplitPipeline("m", (StageSteps("a", step), StageSteps("b", step)), CloudStep(0.02, 0.004))
    cfg = SimConfig(edge_link_spread=0.3, cloud_link_spread=0.3, seed=7)

    def run(seed: int) -> list[dict[str, object]]:
        tasks = make_tasks("m", 40, rate_per_s=60.0, priorities=3, seed=seed)
        config = SimConfig(**{**cfg.__dict__, "seed": seed})
        return [t.to_dict() for t in simulate({"m": wl}, tasks, config).tasks]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InvalidPlan, match="largest zone"):
        simulate({"m": Replicated("m", 4, (1.0,), (None,), zone=(2,))}, at_zero(1))
    with pytest.raises(InvalidPlan, match="no workload"):
        simulate({"m": compute_only(1.0)}, [TaskSpec(0, "x", 1, 0.0)])
