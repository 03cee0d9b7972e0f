"""Print the image's pip requirements, read from pyproject.toml, one per line.

Used by docker/Dockerfile to install every dependency *before* the source is copied (so a code change
reuses the dependency layer). torch is left out: the Dockerfile installs the CPU build first, from the
PyTorch CPU index, at the version pinned in pyproject.toml. ``--extra NAME`` adds the requirement of
that name from the optional dependency groups (e.g. ``locust`` for the load-test job), keeping its
version range from pyproject.toml.

    python docker/requirements.py pyproject.toml --extra locust
    python docker/requirements.py pyproject.toml --torch-version   # prints 2.13.0
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(req: str) -> str:
    """Normalised distribution name of a PEP 508 requirement (``uvicorn[standard]>=0.29`` -> ``uvicorn``)."""
    match = _NAME.match(req)
    if match is None:
        raise ValueError(f"not a PEP 508 requirement: {req!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def image_requirements(pyproject: dict, extras: list[str]) -> list[str]:
    """Runtime dependencies without torch, plus the named optional requirements."""
    project = pyproject["project"]
    reqs = [r for r in project["dependencies"] if requirement_name(r) != "torch"]
    optional = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    for name in extras:
        found = [r for r in optional if requirement_name(r) == requirement_name(name)]
        if not found:
            raise SystemExit(
                f"requirements.py: {name!r} is in no optional dependency group of pyproject.toml"
            )
        reqs.append(found[0])
    return reqs


def torch_version(pyproject: dict) -> str:
    """The exact torch version pinned in ``project.dependencies`` (``torch==X``)."""
    for req in pyproject["project"]["dependencies"]:
        if requirement_name(req) == "torch":
            match = re.search(r"==\s*([^\s,;]+)", req)
            if match:
                return match.group(1)
    raise SystemExit("requirements.py: pyproject.toml does not pin torch with ==")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--extra", action="append", default=[], help="an optional requirement to add")
    parser.add_argument("--torch-version", action="store_true", help="print the pinned torch version")
    args = parser.parse_args(argv)
    data = tomllib.loads(args.pyproject.read_text())
    lines = [torch_version(data)] if args.torch_version else image_requirements(data, args.extra)
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
