"""Do models pruned and recovered on the odd classes lean towards them? Measured on the held-out even classes.

The accuracy protocol splits the shared ImageNet photos by class index: the odd classes are the user's
unlabeled images (allocation, reconstruction, distillation), the even ones only give top-1. ImageNet's
class order puts similar classes side by side (dog breeds, snakes), so every even class has odd
neighbours, and a model fitted on the odd photos alone may learn to answer with the odd neighbour. This
script scores each model on the even-class photos and counts, among its wrong answers, the share that name
an odd class, with the unpruned model as the reference (its errors show where confusions fall without any
fitting), and the mean logit of the odd classes minus the even ones.

    python benchmarks/class_split_bias.py --split S [--label NAME=SHRINK_FOLDER ...] [--pair NAME,NAME ...] [--keep]

`--keep` adds to the JSON instead of replacing it: earlier rows stay unless a --label of the same name
scores them again, and every pair, earlier and new, is counted again from the rows as they now are.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from protocol import WEIGHTS, paired

import mobileprune
from mobileprune.artifacts.shrink_folder import load_output
from mobileprune.atomic import write_json
from mobileprune.models.labels import class_ids
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import make_loader, open_image_folder

HERE = Path(__file__).resolve().parent


@torch.no_grad()
def lean(model: torch.nn.Module, spec, heldout: Path, reference: torch.Tensor | None = None) -> dict:
    """Top-1 and where the errors fall; with `reference` (the unpruned model's top-1 per photo) also the
    errors pruning made: photos the unpruned model had right and this one has wrong."""
    images = open_image_folder(heldout, spec.input_size, spec.mean, spec.std, classes=class_ids(spec))
    logits, labels = [], []
    for batch in make_loader(images, 50, False, workers=1):
        logits.append(model.eval()(batch.images))
        labels.append(batch.labels)
    out, y = torch.cat(logits), torch.cat(labels)
    top = out.argmax(1)
    wrong = top != y
    row = {
        "top1": round(float((~wrong).float().mean()), 4),
        "errors": int(wrong.sum()),
        "errors_naming_an_odd_class": round(float((top[wrong] % 2 == 1).float().mean()), 4),
        "odd_minus_even_logit": round(float((out[:, 1::2].mean(1) - out[:, 0::2].mean(1)).mean()), 4),
        "top": top.tolist(),  # per photo, in the folder's order (the same for every row)
        "right": (~wrong).tolist(),
    }
    if reference is not None:
        new = wrong & (torch.tensor(reference) == y)
        row["new_errors"] = int(new.sum())
        row["new_errors_naming_an_odd_class"] = round(float((top[new] % 2 == 1).float().mean()), 4)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, required=True, help="imagenet_split.py output (heldout/)")
    ap.add_argument("--label", action="append", default=[], help="NAME=FOLDER: a shrink output folder to score")
    ap.add_argument("--pair", action="append", default=[], help="NAME,NAME: McNemar counts between two rows")
    ap.add_argument("--keep", action="store_true", help="keep the JSON's other rows and pairs")
    args = ap.parse_args()
    out = HERE / "results" / "class_split_bias.json"
    earlier = json.loads(out.read_text()) if args.keep and out.exists() else {"rows": {}, "pairs": []}
    unpruned = mobileprune.load_model(WEIGHTS, arch="mobilenet_v2")
    rows = earlier["rows"] | {"unpruned": lean(unpruned.model, unpruned.spec, args.split / "heldout")}
    print("unpruned", {k: v for k, v in rows["unpruned"].items() if k not in ("top", "right")}, flush=True)
    for item in args.label:
        name, folder = item.split("=", 1)
        loaded = load_output(Path(folder))
        report = (Path(folder) / "report.json").read_text()
        scored = lean(loaded.model, loaded.spec, args.split / "heldout", rows["unpruned"]["top"])
        rows[name] = {**scored, "report": _summary(report)}
        print(name, {k: v for k, v in scored.items() if k not in ("top", "right")}, flush=True)
    named = [(p["first"], p["second"]) for p in earlier["pairs"]] + [_pair_names(item, rows) for item in args.pair]
    pairs = [_mcnemar(rows, *names) for names in dict.fromkeys(named)]
    for pair in pairs:
        print(pair, flush=True)
    result = {
        "what": __doc__.splitlines()[0],
        "rows": rows,
        "pairs": pairs,
        "versions": versions(),
        "machine": machine_facts(),
    }
    write_json(out, result)


def _pair_names(item: str, rows: dict) -> tuple[str, str]:
    """NAME,NAME split at the comma that leaves two row names (the names may hold commas themselves)."""
    for i, char in enumerate(item):
        if char == "," and item[:i] in rows and item[i + 1 :] in rows:
            return item[:i], item[i + 1 :]
    raise SystemExit(f"--pair {item!r}: not two of the rows {', '.join(rows)}")


def _mcnemar(rows: dict, first: str, second: str) -> dict:
    """Photos right with only one of two models, and McNemar's z (positive: the second is better)."""
    only_first, only_second, z = paired(rows[first]["right"], rows[second]["right"])
    return {
        "first": first,
        "second": second,
        "right_only_first": only_first,
        "right_only_second": only_second,
        "z": z,
    }


def _summary(report_text: str) -> dict:
    report = json.loads(report_text)
    return {
        "command": report.get("command"),
        "ratios": report["ratios"],
        "fine_tune_steps": report["retraining"].get("steps"),
        "retrain_check": report["retraining"].get("check"),
        "mobileprune": report.get("versions", {}).get("mobileprune"),
    }


if __name__ == "__main__":
    main()
