"""Registries: a choice's name maps to the one object holding its behaviour (SB3's ``policy_aliases``).

Code asks the object and never compares the name with a string, so adding a choice is adding an
entry (and its name to the ``Literal`` in ``edgesplit.type_aliases``), not editing every ``if``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from edgesplit.errors import EdgesplitError, InvalidPlan

K = TypeVar("K", bound=str)
V = TypeVar("V")


class Registry(Mapping[K, V], Generic[K, V]):
    """An ordered, read-only ``name -> object`` table of one kind of choice.

    Looking up an unknown name raises ``error`` (a domain error, ``InvalidPlan`` unless given) whose
    message lists the names known.
    """

    def __init__(self, kind: str, entries: Mapping[K, V], error: type[EdgesplitError] = InvalidPlan) -> None:
        self.kind = kind
        self._entries = dict(entries)
        self._error = error

    def __getitem__(self, name: K | str) -> V:
        try:
            return self._entries[name]  # type: ignore[index]
        except KeyError:
            raise self._error(f"unknown {self.kind} {name!r}; expected one of {', '.join(self._entries)}") \
                from None

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> tuple[K, ...]:
        return tuple(self._entries)

    def parse(self, name: str) -> K:
        """``name`` as a registered name, else the registry's domain error: a typer option's ``parser``
        (``typer.Option(..., parser=REGISTRY.parse)``), so the CLI refuses an unknown choice as the
        core does (one line on stderr, exit status 2) and its parameter keeps the ``Literal`` type."""
        self[name]
        return name  # type: ignore[return-value]

    def help(self) -> str:
        """The names, for a CLI option's help: ``a | b | c``."""
        return " | ".join(self._entries)

