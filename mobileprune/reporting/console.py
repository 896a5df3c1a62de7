"""The tables a person reads in the terminal: shrink/info reports, conversions, benchmarks, sweeps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from ..prune.report import ShrinkReport


def print_report(report: ShrinkReport, console: Console) -> None:
    before, after, ratios = report.before, report.after, report.ratios
    summary = Table(title=f"{report.spec.arch} ({report.source.get('weights')} weights)", title_justify="left")
    summary.add_column("")
    summary.add_column("before", justify="right")
    summary.add_column("after", justify="right")
    summary.add_column("ratio", justify="right")
    summary.add_row("parameters", f"{before.params:,}", f"{after.params:,}", f"{ratios['params']:.4f}")
    summary.add_row("MACs", f"{before.macs:,}", f"{after.macs:,}", f"{ratios['macs']:.4f}")
    acc = report.accuracy
    for stage, label in (
        (acc.before, "top-1 before"),
        (acc.after_pruning, "top-1 after pruning"),
        (acc.after_retraining, "top-1 after retraining"),
    ):
        if stage:
            summary.add_row(label, "", f"{stage.top1:.4f}", "")
    console.print(summary)

    if report.sparsity:
        print_sparsity(report.sparsity, console)
    else:
        stages = Table(title="channels per group (producer layer)", title_justify="left")
        stages.add_column("group")
        stages.add_column("before", justify="right")
        stages.add_column("after", justify="right")
        for g in report.groups:
            mark = "" if g["before"] == g["after"] else f" (-{g['before'] - g['after']})"
            stages.add_row(g["group"], str(g["before"]), f"{g['after']}{mark}")
        console.print(stages)

        console.print(
            f"target {report.target:.4f} of {report.by}, achieved {report.achieved:.4f}; "
            f"allocation: {report.allocation.get('strategy')}; "
            f"criterion: {report.config.get('criterion')}; schedule: {report.config.get('schedule')}; "
            f"time taken {report.timings_s.get('total_s', 0.0):.1f} s",
            highlight=False,
        )
    if report.resolution:
        res = report.resolution
        console.print(
            f"resolution {res['from_px']} → {res['to_px']} px (the app feeds it {res['to_px']}-px images) keeps "
            f"{res['macs_kept_by_resolution']:.4f} of the MACs; filters kept {res['filters']['achieved']:.4f} "
            f"of those (target {res['filters']['target']:.4f}); 'before' is the unpruned model at "
            f"{res['from_px']} px, its top-1 at {res['to_px']} px",
            highlight=False,
        )
    latency = report.latency
    if latency:
        ms = latency["measured_ms"]
        console.print(
            f"latency on {latency['runtime']} {latency['precision']}, {latency['threads']} thread(s) "
            f"({latency['machine']}): measured {ms:.3f} ms against the unpruned model interleaved, "
            f"{1 / report.achieved:.2f}x faster (noise {latency['noise']:.1%})",
            highlight=False,
        )
    if acc.worst_classes:
        print_worst_classes(acc.worst_classes, console)
    retrain = report.retraining
    if not retrain.get("done"):
        console.print(f"[yellow]{retrain.get('note', '')}[/yellow]")
    elif retrain.get("skipped_images"):
        console.print(f"[yellow]skipped {retrain['skipped_images']} unreadable images[/yellow]")
    if check := retrain.get("check"):
        console.print(retrain_check_line(check), highlight=False)


def retrain_check_line(check: dict) -> str:
    """The validation images' verdict on retraining, in one line (reports before per-epoch scoring too)."""
    history = check.get("history") or []
    after = f"at best (epoch {check['epoch']:g} of {history[-1]['epoch']:g})" if len(history) > 1 else "after"
    stopped = f"; stopped early after epoch {check['stopped_early_at']:g}" if "stopped_early_at" in check else ""
    return (
        f"retraining judged by {check['measure']}: {check['before']['loss']:.4f} before, "
        f"{check['after']['loss']:.4f} {after}; kept the model {check['kept']}{stopped}"
    )


def print_sparsity(sparsity: dict, console: Console) -> None:
    """Zeros per layer, the overall sparsity and XNNPACK's verdict on the sparse layers."""
    table = Table(title=f"sparsity per layer ({sparsity['excluded']})", title_justify="left")
    for col in ("layer", "shape", "sparsity", "1×1 (XNNPACK sparse kind)"):
        table.add_column(col, justify="right" if col == "sparsity" else "left")
    for row in sparsity["layers"]:
        table.add_row(
            row["layer"],
            "×".join(map(str, row["shape"])),
            f"{row['sparsity']:.3f}",
            "yes" if row["xnnpack_sparse_kind"] else "",
        )
    console.print(table)
    structured = sparsity.get("structured")
    if structured:
        console.print(
            f"structured step: shrink kept {structured['params_ratio']:.4f} of the parameters "
            f"({structured['macs_ratio']:.4f} of the MACs), then {structured['then']}",
            highlight=False,
        )
    xnn = sparsity["xnnpack"]
    console.print(
        f"{sparsity['method']}: {sparsity['achieved']:.4f} of {sparsity['weights']:,} weights are zero "
        f"({sparsity['of_original']:.4f} of the unpruned model's, removed filters included); "
        f"XNNPACK sparse inference: {'yes' if xnn['sparse_inference'] else 'no'} "
        f"({xnn['reason']}; on x86 it runs dense)",
        highlight=False,
        soft_wrap=True,
    )


def print_conversion(results, console: Console) -> None:
    table = Table(title="converted", title_justify="left")
    for col in ("format", "file", "precision", "input", "MB (zip)", "check", "convert s"):
        table.add_column(col, justify="right" if col in ("MB (zip)", "convert s") else "left")
    for r in results:
        style = None if r.ok else "red"
        size = f"{r.size_mb:.2f}" if r.size_mb is not None else "-"
        size += f" ({r.zip_mb:.2f})" if r.zip_mb is not None else ""
        row = (r.format, r.file or "-", r.precision, r.layout, size, escape(r.check), f"{r.seconds:.1f}")
        table.add_row(*row, style=style)
    console.print(table)
    for r in results:
        for note in r.notes:
            console.print(f"{r.file}: {escape(note)}", highlight=False, soft_wrap=True)
    for r in results:  # tables truncate in narrow terminals; what went wrong must be readable in full
        if not r.ok:
            console.print(f"[red]{r.format}: {escape(r.check)}[/red]", soft_wrap=True)


def print_bench(result, console: Console) -> None:
    """Latency per model, runtime and thread count; then each speed-up beside the MAC ratio promised."""
    table = Table(title="latency (batch 1)", title_justify="left")
    for col in ("model", "file", "runtime", "threads", "median ms", "mean ms", "p90 ms", "p99 ms", "FPS", "init ms"):
        table.add_column(col, justify="left" if col in ("model", "file", "runtime") else "right")
    for m in result.measurements:
        s = m.stats
        cells = (s.median_ms, s.mean_ms, s.p90_ms, s.p99_ms, s.fps, m.init_ms)
        table.add_row(m.model, m.file, m.runtime, str(m.threads), *(_num(c) for c in cells))
    console.print(table)
    if result.speedups:
        speed = Table(title=f"speed-up over {result.speedups[0].baseline}", title_justify="left")
        for col in ("model", "file", "runtime", "threads", "speed-up", "MAC ratio → ideal", "param ratio"):
            speed.add_column(col, justify="left" if col in ("model", "file", "runtime") else "right")
        for s in result.speedups:
            ideal = f"{s.mac_ratio:.3f} → {1 / s.mac_ratio:.2f}x" if s.mac_ratio else "-"
            speed.add_row(s.model, s.file, s.runtime, str(s.threads), f"{s.speedup:.3f}x", ideal, _num(s.param_ratio))
        console.print(speed)
    for line in result.skipped:
        console.print(f"[yellow]not timed: {escape(line)}[/yellow]")
    for line in result.notes:
        console.print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.1f}"


def print_sweep(points, console: Console) -> None:
    """One row per (criterion, target), best score marked."""
    table = Table(title="sweep (same retraining budget per point)", title_justify="left")
    for col in ("criterion", "target", "params", "MACs", "top-1 pruned", "top-1 final", "score", "wall s"):
        table.add_column(col, justify="left" if col == "criterion" else "right")
    scored = [p for p in points if p.score is not None]
    best = max(scored, key=lambda p: p.score) if scored else None
    for p in points:
        cells = (p.params_ratio, p.macs_ratio, p.top1_after_pruning, p.accuracy, p.score)
        row = (p.criterion + (" *" if p is best else ""), f"{p.target:g}", *(_num(c) for c in cells), f"{p.wall_s:.0f}")
        table.add_row(*row)
    console.print(table)
    if best:
        console.print(f"* best score (accuracy + sparsity) / 2: {best.criterion} at {best.target:g}", highlight=False)


def print_comparison(result, console: Console, worst: int = 10) -> None:
    """`compare`'s summary: each model's accuracy and agreement, the most damaged classes, the PIE count."""
    table = Table(title=f"compared on {result.images} images", title_justify="left")
    for col in ("model", "runs in", "top-1", "top-5", "same top-1 as first"):
        table.add_column(col, justify="left" if col in ("model", "runs in") else "right")
    for m in result.models:
        table.add_row(
            escape(m["label"]), m["kind"], f"{m['top1']:.3f}", f"{m['top5']:.3f}", f"{m['agreement_with_first']:.3f}"
        )
    console.print(table)
    print_worst_classes([c.to_json() for c in result.classes[:worst]], console)
    share = len(result.pie) / max(result.images, 1)
    console.print(
        f"pruning-identified exemplars (pruned models' modal top-1 differs from the first model's): "
        f"{len(result.pie)} of {result.images} images ({share:.1%})",
        highlight=False,
    )


def print_worst_classes(classes: list[dict], console: Console) -> None:
    """The most damaged classes (compare/damage.py rows as JSON, worst first), with each class's image count."""
    table = Table(title=f"the {len(classes)} most damaged classes", title_justify="left")
    for col in ("class", "images", "top-1 before", "top-1 after", "change"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in classes:
        note = " (too few images to judge)" if c["too_few_images"] else ""
        table.add_row(
            escape(c["name"]) + note,
            str(c["images"]),
            f"{c['top1_before']:.3f}",
            f"{c['top1_after']:.3f}",
            f"{c['top1_change']:+.3f}",
        )
    console.print(table)
