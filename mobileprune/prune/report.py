"""`ShrinkReport`: what a shrink run did, typed, and its `report.json` form (read back by `info`, `sweep`,
`bench` and `convert`).

`to_json` writes the same keys every version has written; `from_json` reads any of them and turns a
damaged file into one line saying what is wrong with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from ..errors import UserError
from ..models import ModelSpec
from ..train.loop import Accuracy
from .cost import Cost


@dataclass
class AccuracyReport:
    """Top-1/top-5 at each stage that was measured (None: not measured), and on what."""

    before: Accuracy | None = None
    after_sparsity_training: Accuracy | None = None
    after_pruning: Accuracy | None = None
    after_retraining: Accuracy | None = None
    eval_images: str | None = None
    note: str | None = None
    worst_classes: list[dict[str, Any]] | None = None  # most damaged first (compare/damage.py rows), top 10

    STAGES = ("before", "after_sparsity_training", "after_pruning", "after_retraining")

    def final(self) -> Accuracy | None:
        """After retraining when there was any, else after pruning."""
        return self.after_retraining or self.after_pruning

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: _acc(getattr(self, k)) for k in self.STAGES}
        return {**out, "eval_images": self.eval_images, "note": self.note, "worst_classes": self.worst_classes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccuracyReport:
        stages = {k: Accuracy(**data[k]) if data.get(k) else None for k in cls.STAGES}
        return cls(
            **stages,
            eval_images=data.get("eval_images"),
            note=data.get("note"),
            worst_classes=data.get("worst_classes"),
        )


@dataclass
class ShrinkReport:
    source: dict[str, Any]  # path, weights ("random", "checkpoint", ...), sha256
    spec: ModelSpec
    config: dict[str, Any]
    target: float
    by: str
    achieved: float
    before: Cost
    after: Cost
    allocation: dict[str, Any]  # strategy, removed_units
    groups: list[dict[str, Any]]  # group, before, after (channels)
    layers: list[dict[str, Any]]
    schedule_log: list[dict[str, Any]]
    accuracy: AccuracyReport
    retraining: dict[str, Any]
    timings_s: dict[str, float]
    versions: dict[str, str]
    mobileprune: str = ""
    reconstruction: dict[str, Any] = field(default_factory=dict)  # layers re-fitted, errors before/after
    latency: dict[str, Any] = field(default_factory=dict)  # --by latency: runtime, table, predicted vs measured
    files: dict[str, Any] = field(default_factory=dict)  # filled by save_output
    command: str = ""  # the command line that made it, when it came from the CLI
    sparsity: dict[str, Any] = field(default_factory=dict)  # sparsify: method, zeros per layer, XNNPACK verdict
    resolution: dict[str, Any] = field(default_factory=dict)  # --resolution: sizes, and the filters' own target

    def __getitem__(self, key: str) -> Any:
        """report.json's keys, read as before the report was typed: `result.report["achieved"]`."""
        return self.to_json()[key]

    @property
    def ratios(self) -> dict[str, float]:
        return {
            "params": round(self.after.params / self.before.params, 4),
            "macs": round(self.after.macs / self.before.macs, 4),
        }

    def to_json(self) -> dict[str, Any]:
        out = {
            "mobileprune": self.mobileprune,
            "source": self.source,
            "spec": self.spec.to_json(),
            "config": self.config,
            "target": self.target,
            "by": self.by,
            "achieved": self.achieved,
            "before": {"params": self.before.params, "macs": self.before.macs},
            "after": {"params": self.after.params, "macs": self.after.macs},
            "ratios": self.ratios,
            "allocation": self.allocation,
            "groups": self.groups,
            "layers": self.layers,
            "schedule_log": self.schedule_log,
            "accuracy": self.accuracy.to_json(),
            "retraining": self.retraining,
            "timings_s": self.timings_s,
            "versions": self.versions,
        }
        if self.reconstruction:
            out["reconstruction"] = self.reconstruction
        if self.latency:
            out["latency"] = self.latency
        if self.files:
            out["files"] = self.files
        if self.command:
            out["command"] = self.command
        if self.sparsity:
            out["sparsity"] = self.sparsity
        if self.resolution:
            out["resolution"] = self.resolution
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "report.json") -> ShrinkReport:
        """Read a report.json of any version; a damaged one is a `UserError` naming what is wrong."""
        try:
            return cls(
                source=dict(data["source"]),
                spec=ModelSpec.from_json(data["spec"]),
                config=dict(data.get("config", {})),
                target=float(data["target"]),
                by=str(data["by"]),
                achieved=float(data["achieved"]),
                before=Cost(int(data["before"]["params"]), int(data["before"]["macs"])),
                after=Cost(int(data["after"]["params"]), int(data["after"]["macs"])),
                allocation=dict(data.get("allocation", {})),
                groups=list(data.get("groups", [])),
                layers=list(data.get("layers", [])),
                schedule_log=list(data.get("schedule_log", [])),
                accuracy=AccuracyReport.from_json(data.get("accuracy") or {}),
                retraining=dict(data.get("retraining", {})),
                timings_s={k: float(v) for k, v in data.get("timings_s", {}).items()},
                versions=dict(data.get("versions", {})),
                mobileprune=str(data.get("mobileprune", "")),
                reconstruction=dict(data.get("reconstruction", {})),
                latency=dict(data.get("latency", {})),
                files=dict(data.get("files", {})),
                command=str(data.get("command", "")),
                sparsity=dict(data.get("sparsity", {})),
                resolution=dict(data.get("resolution", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise UserError(f"'{where}' is damaged ({what}): not a report mobileprune wrote") from None


def _acc(acc: Accuracy | None) -> dict | None:
    return acc.to_json() if acc else None


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """[in, out, groups] of every conv and linear, to show what pruning changed."""
    shapes = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            shapes[name] = [m.in_channels, m.out_channels, m.groups]
        elif isinstance(m, nn.Linear):
            shapes[name] = [m.in_features, m.out_features, 1]
    return shapes


def layer_changes(before: dict[str, list[int]], after: dict[str, list[int]]) -> list[dict]:
    return [
        {"layer": n, "in": [b[0], after[n][0]], "out": [b[1], after[n][1]], "groups": after[n][2]}
        for n, b in before.items()
    ]
