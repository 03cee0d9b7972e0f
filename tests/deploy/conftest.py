"""Fixtures of the static deployment checks (marker ``deploy``): one helm home, cached renders."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pytest

from tests.deploy import support


class Renderer(Protocol):
    """``rendered(ci_file_or_None, kube_version)``: the chart's objects for one ci scenario."""

    def __call__(self, ci_file: Path | None, kube_version: str = ...) -> list[support.Obj]: ...


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/deploy carries the ``deploy`` marker."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.deploy)


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture(scope="session")
def rendered(helm_home: Path) -> Renderer:
    """``rendered(ci_file_or_None, kube_version)``: the chart's objects, rendered once per pair."""
    cache: dict[tuple[Path | None, str], list[support.Obj]] = {}

    def get(ci_file: Path | None, kube_version: str = support.KUBE_VERSIONS[0]) -> list[support.Obj]:
        key = (ci_file, kube_version)
        if key not in cache:
            cache[key] = support.render(helm_home, [ci_file] if ci_file else [], kube_version)
        return cache[key]

    return get
