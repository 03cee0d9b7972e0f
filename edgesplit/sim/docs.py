"""``edgesplit reproduce report``: write the rendered blocks into the docs, or check that they match.

A generated block in a Markdown file is the text between ``<!-- generated:NAME -->`` and
``<!-- /generated:NAME -->`` (each on its own line). ``write_report`` fills every block of ``DOCS``
from a ``summary.json`` (``edgesplit.sim.report.render``) and copies the summary and the PNGs into
``docs/reproduction/``; ``check_report`` lists the blocks whose committed text differs from what the
summary renders (run times excepted, they differ on every run). ``structure`` masks the numbers, so a
``--quick`` summary can be held against the committed docs (the test suite does this).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from edgesplit.errors import InvalidInput
from edgesplit.sim.report import NEVER, VOLATILE, render

DOCS: tuple[str, ...] = ("README.md", "docs/REPRODUCTION.md", "docs/BENCHMARKS.md", "docs/ALLOCATION.md")
SUMMARY = Path("docs/reproduction/summary.json")
TESTBED = Path("docs/benchmarks/testbed/testbed.json")
FIGURES: tuple[str, ...] = ("fig6", "fig7", "fig8", "fig9", "compare")
BLOCK = re.compile(r"^<!-- generated:(?P<name>[\w-]+) -->\n(?P<body>.*?)^<!-- /generated:(?P=name) -->$",
                   re.MULTILINE | re.DOTALL)
NUMBER = re.compile(rf"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?|\b{NEVER}\b")


def blocks_in(text: str) -> dict[str, str]:
    """The generated blocks of a Markdown text, by name (bodies without the marker lines)."""
    return {m["name"]: m["body"].rstrip("\n") for m in BLOCK.finditer(text)}


def fill(text: str, blocks: dict[str, str]) -> str:
    """``text`` with every generated block replaced by ``blocks[name]``; InvalidInput for an unknown name."""
    def body(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in blocks:
            raise InvalidInput(f"unknown generated block {name!r}; expected one of "
                               f"{', '.join(sorted(blocks))}")
        return f"<!-- generated:{name} -->\n{blocks[name]}\n<!-- /generated:{name} -->"

    return BLOCK.sub(body, text)


def structure(markdown: str) -> str:
    """The block with every number (and "never") masked: what a ``--quick`` run must reproduce."""
    return NUMBER.sub("#", markdown)


def load_testbed(root: Path) -> dict[str, Any] | None:
    path = root / TESTBED
    return json.loads(path.read_text()) if path.exists() else None


def rendered(root: Path, summary: dict[str, Any]) -> dict[str, str]:
    return render(summary, load_testbed(root))


def check_report(root: Path, summary: dict[str, Any], structure_only: bool = False,
                 skip: frozenset[str] = VOLATILE) -> list[str]:
    """One line per doc block that differs from what ``summary`` renders (empty: they agree), and one
    per block that no doc holds. ``skip``: blocks not compared (by default the run times)."""
    blocks = rendered(root, summary)
    problems, seen = [], set()
    for doc in DOCS:
        for name, body in blocks_in((root / doc).read_text()).items():
            seen.add(name)
            if name not in blocks:
                problems.append(f"{doc}: unknown generated block {name!r}")
            elif name in skip:
                continue
            elif structure_only and structure(body) != structure(blocks[name]):
                problems.append(f"{doc}: block {name!r} differs in structure from the summary's")
            elif not structure_only and body != blocks[name]:
                problems.append(f"{doc}: block {name!r} differs from what the summary renders")
    problems += [f"no doc holds the generated block {name!r}" for name in sorted(blocks.keys() - seen)]
    return problems


def write_report(root: Path, out: Path) -> list[str]:
    """Fill the docs under ``root`` from ``out/summary.json``; copy it and the PNGs to docs/reproduction/.

    Refuses a ``--quick`` summary (the docs quote the full runs). ``out`` may be docs/reproduction
    itself: the docs are then re-rendered from the committed summary (and the testbed file) without
    running anything. Returns the files changed.
    """
    summary = json.loads((out / "summary.json").read_text())
    if summary.get("quick"):
        raise InvalidInput(f"{out / 'summary.json'} is from a --quick run; the docs quote full runs: run "
                           "`edgesplit reproduce all` first")
    blocks = rendered(root, summary)
    changed = []
    for doc in DOCS:
        path = root / doc
        old = path.read_text()
        new = fill(old, blocks)
        if new != old:
            path.write_text(new)
            changed.append(doc)
    target = root / SUMMARY
    if (out / "summary.json").resolve() == target.resolve():
        return changed  # re-rendered from the committed summary (e.g. a new testbed.json): nothing to copy
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(summary, indent=1) + "\n")
    changed.append(str(SUMMARY))
    for name in FIGURES:
        png = out / f"{name}.png"
        if png.exists():
            shutil.copyfile(png, target.parent / png.name)
            changed.append(str(SUMMARY.parent / png.name))
    return changed
