"""Start-up of real executor processes: unsafe settings refused, weights files, readiness."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from edgesplit import wire
from edgesplit.models import get_spec
from edgesplit.models.build import build_module, save_weights
from edgesplit.split import make_slices
from tooling.proc import Spawner

pytestmark = pytest.mark.services
SPEC = get_spec("digits-cnn")


@pytest.mark.parametrize("bad", [{"threads": "0"}, {"token": "short"}, {"models": "lenet"},
                                 {"max_body_bytes": "10"}, {"slice_delay_s": "-1"}],
                         ids=lambda b: next(iter(b)))
def test_unsafe_settings_are_refused_at_start_up(spawn: Spawner, bad: dict[str, str]) -> None:
    svc = spawn.executor("bad", wait=False, **bad)
    assert svc.proc.wait(60) == 2  # settings are checked before the app (and torch) is imported
    key = next(iter(bad)).upper()
    assert f"EDGESPLIT_EXECUTOR_{key}" in svc.log_tail(), svc.log_tail()


def test_weights_come_from_the_weights_dir(spawn: Spawner, tmp_path: Path) -> None:
    module = build_module(SPEC, seed=7).requires_grad_(False)
    save_weights(module, tmp_path / "digits-cnn.safetensors")
    svc = spawn.executor("weights", models="digits-cnn,alexnet-paper", weights_dir=tmp_path)
    info = httpx.get(f"{svc.url}/v1/info").json()
    assert info["models"]["digits-cnn"]["weights"].endswith("digits-cnn.safetensors")
    assert info["models"]["alexnet-paper"]["weights"] == "seed:0"  # no file for it: seeded
    sl = make_slices(SPEC, 0, 5, "rows", [4])[0]
    x = torch.randn(sl.in_shape(SPEC, 1))
    r = httpx.post(f"{svc.url}/v1/slices/digits-cnn", params={**wire.slice_to_params(sl), "subzone": "0"},
                   content=wire.encode(x.numpy()))
    assert r.status_code == 200, r.text
    torch.testing.assert_close(torch.from_numpy(wire.decode(bytearray(r.content))), module[:5](x))


def test_not_ready_while_weights_fail_to_load_but_alive(spawn: Spawner, tmp_path: Path) -> None:
    (tmp_path / "digits-cnn.safetensors").write_bytes(b"not a safetensors file")
    svc = spawn.executor("broken", wait=False, models="digits-cnn", weights_dir=tmp_path)
    deadline = time.monotonic() + 60
    ready = None
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{svc.url}/v2/health/ready")
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        if "failed" in ready.text:
            break
        time.sleep(0.1)
    assert ready is not None and ready.status_code == 503
    assert "weights failed to load" in ready.json()["error"]
    assert httpx.get(f"{svc.url}/v2/health/live").status_code == 200
    sl = make_slices(SPEC, 0, 2, "rows", [8])[0]
    r = httpx.post(f"{svc.url}/v1/slices/digits-cnn", params={**wire.slice_to_params(sl), "subzone": "0"},
                   content=wire.encode(np.zeros(sl.in_shape(SPEC), np.float32)))
    assert r.status_code == 503 and "not ready" in r.json()["error"]
