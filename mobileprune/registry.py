"""Named, interchangeable plug-ins: `--criterion NAME`, `--schedule NAME`, `--to FORMAT` are lookups here.

A plug-in is a class with a `name` (and a one-line `description`) registered in its kind's `Registry`.
Its options are its constructor's keyword parameters, declared as dataclass fields with a `help` text
(`option(default, "help")`), so `create(name, **options)` builds it, `options(name)` lists what it takes
(the CLI's `plugins` command prints them), and a user's `--criterion-option KEY=VALUE` is checked
against them. Each registry imports every module of its package on first use (`discover`): a new
plug-in is one new file.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_type_hints

from .errors import UserError

T = TypeVar("T")


def option(default: Any, help: str) -> Any:
    """A plug-in option: a dataclass field with a default and the help line the CLI shows."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class OptionInfo:
    name: str
    type: type
    default: Any
    help: str

    def parse(self, text: str) -> Any:
        """A command-line string as this option's type."""
        if self.type is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, not '{text}'")
        return self.type(text)


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind  # the CLI option it serves, for error messages
        self.package = package  # where its plug-in modules live (imported on first use)
        self._classes: dict[str, type[T]] = {}
        self._discovered = package is None

    def register(self, cls: type[T]) -> type[T]:
        self._classes[cls.name] = cls  # type: ignore[attr-defined]
        return cls

    def discover(self) -> None:
        """Import every module of the plug-in package once, so each registers itself."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def get(self, name: str) -> type[T]:
        self.discover()
        try:
            return self._classes[name]
        except KeyError:
            raise UserError(f"unknown {self.kind} '{name}': choose one of {', '.join(self.names())}") from None

    def create(self, name: str, offered: Mapping[str, Any] | None = None, **options: Any) -> T:
        """Build plug-in `name` with `options` (each must be one it declares) and whichever of the
        `offered` settings it declares too (shared settings such as a seed, taken only where used)."""
        cls = self.get(name)
        known = self.options(name)
        unknown = [k for k in options if k not in known]
        if unknown:
            takes = ", ".join(known) or "no options"
            raise UserError(f"{self.kind} '{name}' has no option '{unknown[0]}' (it takes: {takes})")
        accepted = _init_parameters(cls)
        shared = {k: v for k, v in (offered or {}).items() if k in accepted and k not in options}
        return cls(**shared, **options)

    def options(self, name: str) -> dict[str, OptionInfo]:
        """The user options plug-in `name` declares: its dataclass fields made with `option()`.

        Other constructor parameters (a model, a graph) are what the pipeline hands over, not settings.
        """
        cls = self.get(name)
        if not dataclasses.is_dataclass(cls):
            return {}
        hints = get_type_hints(cls)
        out = {}
        for f in dataclasses.fields(cls):
            if not f.init or "help" not in f.metadata:
                continue
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            kind = hints.get(f.name, str)
            out[f.name] = OptionInfo(f.name, kind if isinstance(kind, type) else str, default, f.metadata["help"])
        return out

    def parse_options(self, name: str, pairs: list[str] | None) -> dict[str, Any]:
        """`KEY=VALUE` strings from the command line, checked and typed against plug-in `name`."""
        known = self.options(name)
        out: dict[str, Any] = {}
        for pair in pairs or []:
            key, sep, value = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in known:
                takes = ", ".join(known) or "no options"
                raise UserError(
                    f"--{self.kind}-option '{pair}': {self.kind} '{name}' takes KEY=VALUE with KEY in: {takes}"
                )
            try:
                out[key] = known[key].parse(value.strip())
            except ValueError as exc:
                raise UserError(f"--{self.kind}-option {key}: {exc}") from None
        return out

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._classes)

    def describe(self, name: str) -> str:
        return getattr(self.get(name), "description", "")

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._classes


def _init_parameters(cls: type) -> set[str]:
    """Every keyword its constructor takes (options and pipeline inputs alike)."""
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls) if f.init}
    import inspect

    return set(inspect.signature(cls).parameters)
