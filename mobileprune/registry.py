"""Named, interchangeable implementations: `--criterion NAME` and `--schedule NAME` are lookups here."""

from __future__ import annotations

from typing import Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind  # the CLI option it serves, for error messages
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        self._classes[cls.name] = cls  # type: ignore[attr-defined]
        return cls

    def create(self, name: str) -> T:
        try:
            return self._classes[name]()
        except KeyError:
            choices = ", ".join(sorted(self._classes))
            raise UserError(f"unknown {self.kind} '{name}': choose one of {choices}") from None

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: str) -> bool:
        return name in self._classes
