"""Sub-zone worker pools in process (no network): exact k-way split, FIFO one at a time, quotas."""

from __future__ import annotations

import asyncio
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.errors import CapacityExceeded, InvalidInput, InvalidPlan, ModelNotFound
from edgesplit.models import ModelSpec, get_spec, spec_from_dict
from edgesplit.split import STRATEGIES, check_group, compute_slice, crop_input, make_slices, part_total
from services.common.models import Deployed, load_part
from services.executor.pool import SubZone, ZonePool
from services.executor.work import slice_flops, worker_parts

pytestmark = pytest.mark.anyio

# strides, dilation, padding and pools of both kinds: the geometry of every sub-slice is exercised
ODD = spec_from_dict({
    "name": "odd", "input": [3, 23, 19], "num_classes": 4,
    "layers": [
        {"type": "conv2d", "out_channels": 6, "kernel": 5, "stride": 2, "padding": 2},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1},
        {"type": "conv2d", "out_channels": 5, "kernel": 3, "stride": 1, "padding": 2, "dilation": 2},
        {"type": "avgpool2d", "kernel": 2, "stride": 1, "padding": 1},
        {"type": "flatten"},
        {"type": "linear", "out_features": 4},
    ],
})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _deployed(spec: ModelSpec) -> Deployed:
    return load_part(spec, "edge", None, 0)


def _groups(spec: ModelSpec) -> list[tuple[int, int, str]]:
    """Every valid (group, strategy): fused groups, lone pools and activations included."""
    out = []
    for start, stop in [(a, b) for a in range(spec.n_edge) for b in range(a + 1, spec.n_edge + 1)]:
        for strategy in STRATEGIES:
            try:
                check_group(spec, start, stop, strategy)
            except InvalidPlan:
                continue
            out.append((start, stop, strategy))
    return out


@settings(max_examples=80, deadline=None)
@given(data=st.data(), k=st.integers(1, 6), spec=st.sampled_from([ODD, get_spec("digits-cnn")]))
def test_k_workers_compute_exactly_the_whole_slice(data: st.DataObject, k: int, spec: ModelSpec) -> None:
    torch.set_num_threads(1)
    dep = _deployed(spec)
    start, stop, strategy = data.draw(st.sampled_from(_groups(spec)))
    total = part_total(spec, start, stop, strategy)
    cut = data.draw(st.integers(0, total))
    x = dep.module[:start](torch.randn(2, *spec.input, generator=torch.Generator().manual_seed(k)))
    for sl in make_slices(spec, start, stop, strategy, [cut, total - cut]):
        xi = crop_input(x, sl)
        want = compute_slice(dep.module, spec, sl, xi)
        parts = worker_parts(spec, sl, k)
        assert len(parts) <= k
        outs = [compute_slice(dep.module, spec, p.slice, p.crop(xi)) for p in parts]
        got = outs[0] if len(parts) == 1 else torch.cat(outs, dim=parts[0].dim)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_slice_flops_add_up_without_halo() -> None:
    spec = get_spec("alexnet-paper")
    flops = spec.layer_flops()
    for strategy in STRATEGIES:
        slices = make_slices(spec, 2, 3, strategy, [1, part_total(spec, 2, 3, strategy) - 1])
        assert sum(slice_flops(spec, s, 3) for s in slices) == pytest.approx(3 * flops[2])


async def test_a_subzone_runs_one_slice_at_a_time_in_arrival_order() -> None:
    spec = get_spec("digits-cnn")
    dep = _deployed(spec)
    sl = make_slices(spec, 0, 2, "rows", [8])[0]
    x = torch.randn(1, *spec.input)
    zone = SubZone(spec.name, 0, 2)
    done: list[int] = []

    async def one(i: int) -> tuple[float, float]:
        run = await zone.run(dep, sl, x, delay_s=0.02)
        done.append(i)
        return run.started_at, run.done_at

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0)  # let task i reach the sub-zone before task i+1 is created
    held = await asyncio.gather(*tasks)
    zone.stop()
    assert done == [0, 1, 2, 3, 4]
    for (_, end), (start, _) in itertools.pairwise(held):
        assert end <= start  # the next slice started only once the previous one was done


async def test_quotas_resize_the_pool_and_respect_capacity() -> None:
    spec = get_spec("digits-cnn")
    dep = _deployed(spec)
    pool = ZonePool(4, {spec.name: spec.n_edge})
    sl = make_slices(spec, 0, 2, "rows", [8])[0]
    x = torch.randn(1, *spec.input)
    assert (await pool.run(dep, 0, sl, x)).workers == 1  # no quota: one worker
    assert pool.set_quotas({spec.name: {0: 3, 2: 1}}) == {spec.name: {0: 3, 2: 1}}
    run = await pool.run(dep, 0, sl, x)
    assert run.workers == 3 and len(pool.subzone(spec.name, 0).threads) == 3
    torch.testing.assert_close(run.output, compute_slice(dep.module, spec, sl, x))
    with pytest.raises(CapacityExceeded, match=r"total 5 threads, above .* capacity of 4"):
        pool.set_quotas({spec.name: {0: 4, 1: 1}})
    with pytest.raises(ModelNotFound):
        pool.set_quotas({"vgg16": {0: 1}})
    with pytest.raises(InvalidInput, match=r"sub-zone 5 out of range.*\[0, 5\)"):
        pool.set_quotas({spec.name: {5: 1}})
    with pytest.raises(InvalidInput, match="expected >= 1"):
        pool.set_quotas({spec.name: {0: 0}})
    assert pool.quotas() == {spec.name: {0: 3, 2: 1}}  # refused changes change nothing
    pool.set_quotas({})
    assert (await pool.run(dep, 0, sl, x)).workers == 1
    pool.shutdown()


def test_capacity_can_follow_a_changing_cpu_limit() -> None:
    limit = [2]
    pool = ZonePool(lambda: limit[0], {"digits-cnn": 5})
    with pytest.raises(CapacityExceeded):
        pool.set_quotas({"digits-cnn": {0: 2, 1: 1}})
    limit[0] = 3  # e.g. the pod's CPU was resized in place
    assert pool.set_quotas({"digits-cnn": {0: 2, 1: 1}}) == {"digits-cnn": {0: 2, 1: 1}}
    assert pool.capacity == 3


async def test_a_haloed_slice_runs_on_one_worker_with_intra_op_threads_exactly() -> None:
    spec = get_spec("digits-cnn")
    dep = _deployed(spec)
    sl = make_slices(spec, 0, spec.n_edge, "rows", [part_total(spec, 0, spec.n_edge, "rows")])[0]
    x = torch.randn(2, *spec.input, generator=torch.Generator().manual_seed(3))
    banded, intra = SubZone(spec.name, 0, 2), SubZone(spec.name, 0, 2, halo_max=0.0)
    a, b = await banded.run(dep, sl, x), await intra.run(dep, sl, x)
    banded.stop()
    intra.stop()
    want = compute_slice(dep.module, spec, sl, x)
    torch.testing.assert_close(a.output, want)
    torch.testing.assert_close(b.output, want)
    assert a.flops > b.flops == pytest.approx(slice_flops(spec, sl, 2))  # the bands recompute the halo
    assert b.workers == 2


async def test_urgent_slices_waiting_together_are_computed_as_one_batch() -> None:
    """``run_urgent``: while one urgent slice computes, the urgent requests that arrive for the same
    slice wait and then go as one batch; each gets its own rows, equal to computing it alone with the
    unsplit module, and its share of the batch. A request cancelled while it waits is left out, and
    one for another slice goes in a batch of its own."""
    spec = get_spec("digits-cnn")
    dep = _deployed(spec)
    sl, other = make_slices(spec, 0, 2, "rows", [8])[0], make_slices(spec, 0, 2, "rows", [4, 4])[0]
    xs = [torch.randn(n, *spec.input) for n in (1, 1, 2, 1, 1)]
    zone = SubZone(spec.name, 0, 2)
    first = asyncio.create_task(zone.run_urgent(dep, sl, xs[0], delay_s=0.3))
    await asyncio.sleep(0.05)  # the first one holds the lane for 0.3 s
    together = [asyncio.create_task(zone.run_urgent(dep, sl, x)) for x in xs[1:3]]
    gone = asyncio.create_task(zone.run_urgent(dep, sl, xs[3]))
    apart = asyncio.create_task(zone.run_urgent(dep, other, crop_input(xs[4], other)))
    await asyncio.sleep(0.05)
    gone.cancel()
    runs = [await first, *[await t for t in together]]
    alone = await apart
    zone.stop()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert runs[0].share == 1.0 and runs[0].done_at <= runs[1].started_at
    assert runs[1].started_at == runs[2].started_at and runs[1].done_at == runs[2].done_at
    assert [r.share for r in runs[1:]] == [1 / 3, 2 / 3]  # rows 1 and 2 of the batch of 3
    assert alone.share == 1.0 and alone.started_at >= runs[1].done_at
    with torch.no_grad():  # the unsplit layers [0, 2), the other slice's output rows of them
        for run, x in zip(runs, xs[:3], strict=True):
            torch.testing.assert_close(run.output, dep.module[0:2](x))
        r0, r1 = other.out_rows
        torch.testing.assert_close(alone.output, dep.module[0:2](xs[4])[:, :, r0:r1])


async def test_an_urgent_slice_takes_the_lane_while_another_sub_zone_computes() -> None:
    """An urgent slice for a quiet sub-zone goes to its urgent lane when another sub-zone of the process
    has bulk work (no-split: a task takes a free sub-zone beside a batch; on that sub-zone's bulk
    threads, niced and ``SCHED_IDLE``, it had no edge over the batch); on a quiet process it runs on
    the sub-zone's own workers. Both results equal the unsplit layers."""
    spec = get_spec("digits-cnn")
    dep = _deployed(spec)
    sl = make_slices(spec, 0, 2, "rows", [8])[0]
    x, y = torch.randn(1, *spec.input), torch.randn(1, *spec.input)
    pool = ZonePool(4, {spec.name: spec.n_edge})
    alone = await pool.run(dep, 1, sl, y, urgent=True)  # a quiet process: the sub-zone's workers
    quiet_zone = pool.subzone(spec.name, 1)
    assert len(quiet_zone.threads) == 1 and quiet_zone.urgent_lane.thread is None
    busy = asyncio.create_task(pool.run(dep, 0, sl, x, delay_s=0.3))  # bulk work in sub-zone 0
    await asyncio.sleep(0.05)
    assert pool.busy()
    urgent_zone = pool.subzone(spec.name, 1)
    urgent = await pool.run(dep, 1, sl, y, urgent=True)
    assert not busy.done(), "the bulk slice ended first: the test proves nothing"
    assert urgent_zone.urgent_lane.thread is not None  # it ran on the lane
    await busy
    pool.shutdown()
    with torch.no_grad():
        want = dep.module[0:2](y)
    torch.testing.assert_close(alone.output, want)
    torch.testing.assert_close(urgent.output, want)
