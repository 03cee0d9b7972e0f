"""Model specs: built-ins, validation messages, FLOPs, torch builder and weights I/O."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from edgesplit.errors import InvalidSpec, ModelNotFound
from edgesplit.models import BUILTINS, get_spec, load_spec_file, spec_from_dict
from edgesplit.models.build import build_module, load_model, load_weights, save_weights


def _spec(layers: list[dict[str, Any]], input_: list[int] | None = None, classes: int = 4) -> dict[str, Any]:
    return {"name": "t", "input": input_ or [3, 8, 8], "num_classes": classes, "layers": layers}


def test_builtins_shapes_and_paper_flops() -> None:
    alex = get_spec("alexnet-paper")
    assert alex.feature_shape == (256, 5, 5)  # 6400 features, as table 2's first FC layer
    # DESIGN.md section 4: 2.99 GFLOP of convs + 0.087 GFLOP of FC; one 80 GFLOPS thread ~ 38.5 ms
    assert alex.edge_flops() == pytest.approx(2.99e9, rel=0.01)
    assert alex.cloud_flops() == pytest.approx(0.087e9, rel=0.01)
    assert (alex.edge_flops() + alex.cloud_flops()) / 80e9 == pytest.approx(0.0385, rel=0.01)
    vgg = get_spec("vgg16-paper")
    assert vgg.feature_shape == (512, 14, 14)  # 100352 features, table 3
    assert len(vgg.conv_indices()) == 13
    for name in BUILTINS:
        spec = get_spec(name)
        assert spec_from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(("layers", "message"), [
    ([{"type": "conv3d"}, {"type": "flatten"}], "conv3d"),
    ([{"type": "conv2d", "out_channels": 2, "kernel": 11}, {"type": "flatten"},
      {"type": "linear", "out_features": 4}], "larger than its padded input"),
    ([{"type": "conv2d", "out_channels": 2, "kernel": 3}, {"type": "flatten"},
      {"type": "linear", "out_features": 4, "in_features": 100}], "flatten gives 72 features"),
    ([{"type": "conv2d", "out_channels": 2, "kernel": 3}, {"type": "linear", "out_features": 4}],
     "flatten"),
    ([{"type": "conv2d", "kernel": 3}, {"type": "flatten"}, {"type": "linear", "out_features": 4}],
     "out_channels"),
    ([{"type": "conv2d", "out_channels": 2, "kernel": 3}, {"type": "flatten"},
      {"type": "linear", "out_features": 5}], "num_classes"),
])
def test_invalid_specs_say_what_is_wrong(layers: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        spec_from_dict(_spec(layers))


def test_unknown_model_and_missing_file() -> None:
    with pytest.raises(ModelNotFound, match="built-in models are"):
        get_spec("resnet")
    with pytest.raises(InvalidSpec, match="does not exist"):
        load_spec_file("/nonexistent/spec.json")


def test_unreadable_spec_files_are_one_line_errors(tmp_path: Path) -> None:
    """A folder, a binary file, an endless device: InvalidSpec, never a traceback or an endless read."""
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"{\"layers\": \xff}")
    for path, message in [(tmp_path, "cannot be read: Is a directory"), (binary, "is not UTF-8 text"),
                          (Path("/dev/zero"), "is larger than")]:
        with pytest.raises(InvalidSpec, match=message):
            load_spec_file(path)


def test_seeded_weights_and_safetensors_roundtrip(tmp_path: Path) -> None:
    spec = get_spec("digits-cnn")
    a, b, c = build_module(spec, 0), build_module(spec, 0), build_module(spec, 1)
    x = torch.randn(2, *spec.input)
    torch.testing.assert_close(a(x), b(x))
    assert not torch.allclose(a(x), c(x))
    save_weights(c, tmp_path / "w.safetensors")
    torch.testing.assert_close(load_model(spec, tmp_path / "w.safetensors")(x), c(x))
    other = build_module(get_spec("alexnet-paper"))
    with pytest.raises(InvalidSpec, match=r"missing|shape"):
        load_weights(other, tmp_path / "w.safetensors")


def test_cli_reports_bad_spec_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_spec([{"type": "conv2d", "out_channels": 2, "kernel": 30},
                                     {"type": "flatten"}, {"type": "linear", "out_features": 4}])))
    proc = subprocess.run([sys.executable, "-m", "edgesplit.cli", "verify", "--model-file", str(bad)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "larger than its padded input" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edgesplit.cli", "verify", "--servers", "0"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "at least 1 server" in proc.stderr


def test_verify_json_contract() -> None:
    proc = subprocess.run([sys.executable, "-m", "edgesplit.cli", "verify", "--model", "digits-cnn",
                           "--servers", "5", "--strategy", "all", "--json"],
                          capture_output=True, text=True, check=True)
    report = json.loads(proc.stdout)
    assert report["model"] == "digits-cnn"
    assert {r["strategy"] for r in report["results"]} == {"rows", "rows-fused", "kernel-rows", "channels"}
    for r in report["results"]:
        assert r["servers"] == 5 and r["ok"] and r["max_rel_err"] <= 1e-5


def test_accuracy_on_digits_agrees_fully() -> None:
    proc = subprocess.run([sys.executable, "-m", "edgesplit.cli", "accuracy", "--dataset", "digits",
                           "--servers", "2,8", "--json"], capture_output=True, text=True, check=True)
    report = json.loads(proc.stdout)
    assert report["unsplit_accuracy"] > 0.95
    assert report["min_agreement"] == 1.0
    assert len(report["results"]) == 2 * 4
