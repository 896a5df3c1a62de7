"""Print the README's tables from benchmarks/results/*.json, so the numbers in the README are the files'.

python tools/results_tables.py accuracy      # accuracy_at_2x.json (docs/accuracy-at-2x.md: every run)
python tools/results_tables.py accuracy --latest   # only each target's newest recipe (the README's table)
python tools/results_tables.py latency       # latency_target.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def _f(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def accuracy(latest: bool = False) -> None:
    """Every row, or with `latest` only the rows of each target's newest reconstruction recipe (today's code:
    a recipe's description only grows, "…, residual blocks to their outputs", so the longest is the newest)."""
    data = json.loads((RESULTS / "accuracy_at_2x.json").read_text())
    print(f"unpruned top-1 {data['unpruned_top1']:.3f}; recovery {data['recovery']['steps']} steps of 32")
    rows = sorted(
        data["rows"], key=lambda row: (_target(row)[0] != "macs", _target(row), _px(row), row["reconstruction"])
    )
    if latest:
        newest: dict[tuple[str, float], str] = {}
        for r in rows:
            newest[_target(r)] = max(newest.get(_target(r), ""), r["reconstruction"], key=len)
        rows = [r for r in rows if r["reconstruction"] == newest[_target(r)]]
        print(f"reconstruction on {', '.join(sorted(set(newest.values())))}")
    recipe = "" if latest else " reconstruction on |"
    print(
        f"| target |{recipe} method | MACs kept | params kept | latency kept (measured) | pruned "
        "| + reconstruction | + distillation | wall (prune / recon / distill) |"
    )
    print("|---" * (9 if latest else 10) + "|")
    for r in rows:
        by, target = _target(r)
        recipe = "" if latest else f" {r['reconstruction']} |"
        at = f" at {r['resolution']} px" if "resolution" in r else ""
        print(
            f"| {target:g} {'MACs' if by == 'macs' else 'latency'}{at} |{recipe} {r['method']} | "
            f"{r['mac_ratio']:.3f} | {r['params_ratio']:.3f} | {_f(r.get('latency_ratio'))} | "
            f"{_f(r['top1_pruned'])} | {_f(r['top1_reconstructed'])} | {_f(r['top1_distilled'])} | "
            f"{r['prune_s']:.0f} / {_f(r.get('reconstruct_s'), 0)} / {_f(r.get('distill_s'), 0)} s |"
        )


def _px(row: dict) -> int:
    """The input size a row ran at (`--resolution` rows say; the others ran at the model's 224)."""
    return row.get("resolution", 224)


def _target(row: dict) -> tuple[str, float]:
    by = row.get("by", "macs")  # rows before `--by latency` rows existed are MACs rows
    return by, row["target_macs" if by == "macs" else "target_latency"]


def latency() -> None:
    data = json.loads((RESULTS / "latency_target.json").read_text())
    print(
        "| model | asked | measured speed-up | noise | MACs kept | params kept "
        "| checks during shrink (measured) | wall |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in data["speedups"]:
        checks = ", ".join(f"{c['measured']:.3f}" for c in r["checks_during_shrink"])
        print(
            f"| {r['arch']} | {r['asked_speedup']:g}x | {r['measured_speedup']:.2f}x | {r['noise']:.1%} | "
            f"{r['mac_ratio']:.3f} | {r['params_ratio']:.3f} | {checks} | {r['wall_s']:.0f} s |"
        )
    if "accuracy" in data:
        a = data["accuracy"]
        print()
        print("| asked | allocated per | predicted damage | measured speed-up | MACs kept | held-out top-1 |")
        print("|---|---|---|---|---|---|")
        for asked, entry in ((k, v) for k, v in a.items() if k.endswith("x")):
            for per in ("ms", "macs"):
                row, kept = entry[per], " (kept by `auto`)" if entry["auto_kept"] == per else ""
                print(
                    f"| {asked} | {'ms' if per == 'ms' else 'MAC'}{kept} "
                    f"| {entry['candidates'][per]['predicted_damage']:.3f} "
                    f"| {row['measured_speedup']:.2f}x | {row['mac_ratio']:.3f} | {row['top1']:.3f} |"
                )
        print(f"noise {a['noise']:.1%}, unpruned top-1 {a['unpruned_top1']:.3f}")
    if "latency_model" in data:
        m = data["latency_model"]
        print(
            f"latency model: {len(m['variants'])} variants, "
            f"median error {m['median_error']:.1%}, worst {m['worst_error']:.1%}"
        )


if __name__ == "__main__":
    if sys.argv[1] == "accuracy":
        accuracy(latest=sys.argv[2:] == ["--latest"])
    else:
        {"latency": latency}[sys.argv[1]]()
