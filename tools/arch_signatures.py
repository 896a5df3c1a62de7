#!/usr/bin/env python3
"""Regenerate mobileprune/models/arch_signatures.json: what a state dict of each known architecture looks like.

`shrink weights.pth` without `--arch` compares the checkpoint's keys and shapes against this table (a
prefilter that takes milliseconds; the match is then verified by building the architecture and loading
the weights). Every entry records the classifier's weight key, so the class count can differ. Run it
after upgrading torchvision or timm:

    .venv/bin/python tools/arch_signatures.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import timm
import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mobileprune.models.infer import TIMM_FAMILIES, signature  # noqa: E402
from mobileprune.models.spec import ZOO, resolve_spec  # noqa: E402


def build(library: str, builder: str) -> torch.nn.Module:
    try:
        with torch.device("meta"):  # no memory and no init work; some builders need real tensors
            return _build(library, builder)
    except (NotImplementedError, RuntimeError):
        return _build(library, builder)


def _build(library: str, builder: str) -> torch.nn.Module:
    if library == "timm":
        return timm.create_model(builder)
    return torchvision.models.get_model(builder, weights=None)


def main() -> None:
    names = {spec.arch: (spec.library, spec.builder) for spec in ZOO.values()}
    taken = set(names.values())
    for name in torchvision.models.list_models(module=torchvision.models):
        if ("torchvision", name) not in taken:
            names[f"torchvision:{name}"] = ("torchvision", name)
    for name in sorted({n for family in TIMM_FAMILIES for n in timm.list_models(family)}):
        if ("timm", name) not in taken:
            names[f"timm:{name}"] = ("timm", name)
    table = {}
    for i, (arch, (library, builder)) in enumerate(sorted(names.items()), 1):
        spec = resolve_spec(arch)
        model = build(library, builder)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        classifier = f"{spec.classifier}.weight" if spec.classifier else _last_weight(shapes)
        if classifier not in shapes:
            print(f"skipped {arch}: no classifier weight '{classifier}'")
            continue
        table[arch] = {"keys": len(shapes), "classifier": classifier, "signature": signature(shapes, classifier)}
        print(f"[{i}/{len(names)}] {arch}")
    versions = {"torchvision": torchvision.__version__, "timm": timm.__version__}
    out = ROOT / "mobileprune" / "models" / "arch_signatures.json"
    out.write_text(json.dumps({"versions": versions, "architectures": table}, indent=0, sort_keys=True) + "\n")
    print(f"wrote {out} ({len(table)} architectures)")


def _last_weight(shapes: dict[str, tuple[int, ...]]) -> str:
    return [k for k, s in shapes.items() if k.endswith(".weight") and len(s) >= 2][-1]


if __name__ == "__main__":
    main()
