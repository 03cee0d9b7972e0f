"""Registries: each choice's name maps to one object, and the type that settings and the CLI check
(``edgesplit.type_aliases``) names exactly the registry's choices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest
from cli_helpers import cli_json, command_app
from pydantic import ValidationError
from typer.testing import CliRunner

from edgesplit.errors import InvalidPlan
from edgesplit.models import get_spec
from edgesplit.plan.cluster import scenario
from edgesplit.plan.commands import register
from edgesplit.plan.modes import SERVED, SERVING_MODES
from edgesplit.plan.planner import PLANNER_FAMILIES, make_plan
from edgesplit.split.runner import VERIFY_MODES, Mode
from edgesplit.split.strategies import STRATEGY
from edgesplit.type_aliases import PipelineMode, ServedName, ServingModeName, Split, Strategy
from loadtest.sweep import MODES
from services.orchestrator.pipeline import PIPELINES
from services.orchestrator.settings import OrchestratorSettings


@pytest.mark.parametrize(("alias", "registry"), [
    (Strategy, STRATEGY), (Split, PLANNER_FAMILIES), (ServingModeName, SERVING_MODES), (ServedName, SERVED),
    (PipelineMode, PIPELINES), (Mode, VERIFY_MODES)])
def test_each_type_names_its_registrys_choices(alias: object, registry: object) -> None:
    assert get_args(alias) == tuple(registry)  # type: ignore[call-overload]
    for name, obj in registry.items():  # type: ignore[attr-defined]
        assert getattr(obj, "name", name) == name


def test_an_unknown_name_is_a_domain_error_listing_the_choices() -> None:
    with pytest.raises(InvalidPlan, match="unknown strategy 'diagonal'; expected one of rows, kernel-rows"):
        STRATEGY["diagonal"]
    with pytest.raises(InvalidPlan, match="unknown split 'x'; expected one of edgesplit, paper"):
        make_plan(get_spec("digits-cnn"), scenario("paper", 0), "x")  # type: ignore[arg-type]


def test_served_configurations_and_modes_agree_with_the_stack() -> None:
    assert SERVING_MODES.names == MODES
    assert [n for n, m in SERVING_MODES.items() if m.planned] == ["split"]
    assert SERVED["paper"] == ("split", "paper", "lockstep") and SERVED["edgesplit"].serving.planned
    spec = get_spec("alexnet-paper")
    cluster = scenario("paper", 0)
    assert SERVING_MODES["no-split"].edge_stop(spec, cluster) == spec.n_edge
    assert 0 <= SERVING_MODES["dads"].edge_stop(spec, cluster) <= spec.n_edge
    assert PLANNER_FAMILIES["paper"].strategies == ("kernel-rows",)
    assert PLANNER_FAMILIES["edgesplit"].strategies == tuple(STRATEGY)


def test_settings_and_the_cli_refuse_an_unknown_choice() -> None:
    assert OrchestratorSettings(mode="dads", split="paper", pipeline="lockstep").mode == "dads"
    for field in ("mode", "split", "pipeline"):
        with pytest.raises(ValidationError, match=field):
            OrchestratorSettings(**{field: "bogus"})
    app = command_app(register)
    assert cli_json(app, "plan", "--model", "digits-cnn", "--split", "paper")["plan"]["split"] == "paper"
    result = CliRunner().invoke(app, ["plan", "--model", "digits-cnn", "--split", "bogus"])
    assert isinstance(result.exception, InvalidPlan) and "unknown split 'bogus'" in str(result.exception)


def test_the_charts_schema_offers_the_registries_choices() -> None:
    """A deployment can choose exactly what the orchestrator's settings accept (adding a mode, a
    planner family or a pipeline to the registry means adding it to the chart's schema too)."""
    schema = json.loads((Path(__file__).parents[2] / "charts/edgesplit/values.schema.json").read_text())
    orch = schema["properties"]["orchestrator"]["properties"]
    assert tuple(orch["mode"]["enum"]) == SERVING_MODES.names
    assert tuple(orch["split"]["enum"]) == PLANNER_FAMILIES.names
    assert tuple(orch["pipeline"]["enum"]) == PIPELINES.names
