"""`report`: everything known about one shrink run as one self-contained HTML page.

No network and no files beside it: the styles are inline and every picture is a PNG inside the page
(`data:` URL), so the page can be mailed or attached to a pull request as it is. Sections appear only when
the run measured what they show (accuracy, latency, per-class damage, a `compare` output's exemplars).
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path
from typing import Any

from ..prune.report import ShrinkReport
from .console import retrain_check_line
from .plots import plot_channels, plot_retrain_check

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 70em;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f5f8; } .muted { color: #666; font-size: 0.9em; }
.bad { color: #c85200; } .good { color: #006ba4; }
img { max-width: 100%; border: 1px solid #eee; } code, pre { background: #f6f6f6; padding: 0.1em 0.3em; }
pre { padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
"""


def render_report(report: ShrinkReport, compare: Path | None = None) -> str:
    """The page for one shrink report; `compare` is a `compare` output folder whose results join it."""
    title = f"mobileprune: {report.spec.arch} to {report.achieved:.3f} of its {report.by}"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<p class='muted'>from <code>{_e(report.source.get('path', ''))}</code> "
        f"({_e(report.source.get('weights', ''))} weights), mobileprune {_e(report.mobileprune)}</p>",
        _summary(report),
        _channels(report),
        _latency(report),
        _retraining(report),
        _classes(report.accuracy.worst_classes),
        _comparison(compare) if compare is not None else "",
        _provenance(report),
    ]
    body = "\n".join(p for p in parts if p)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_report(report: ShrinkReport, out: str | Path, compare: Path | None = None) -> Path:
    out = Path(out)
    out.write_text(render_report(report, compare), encoding="utf-8")
    return out


def _summary(report: ShrinkReport) -> str:
    before, after, ratios = report.before, report.after, report.ratios
    rows = [
        ("parameters", f"{before.params:,}", f"{after.params:,}", f"{ratios['params']:.4f}", "params"),
        ("MACs", f"{before.macs:,}", f"{after.macs:,}", f"{ratios['macs']:.4f}", "macs"),
    ]
    latency = report.latency
    if latency and latency.get("measured_ms") is not None:
        speed = f"{1 / report.achieved:.2f}x faster" if report.by == "latency" and report.achieved else ""
        rows.append(("latency (measured)", "", f"{latency['measured_ms']:.3f} ms", speed, "latency"))
    acc = report.accuracy
    for stage, label in (
        (acc.before, "top-1 before"),
        (acc.after_sparsity_training, "top-1 after sparsity training"),
        (acc.after_pruning, "top-1 after pruning (one-shot)"),
        (acc.after_retraining, "top-1 after recovery"),
    ):
        if stage is not None:
            rows.append((label, "", f"{stage.top1:.4f}", f"{stage.images} images", label.split(" (")[0]))
    cells = "".join(
        f"<tr><td>{_e(name)}</td><td>{b}</td><td id='{_id(key)}'>{a}</td><td>{_e(r)}</td></tr>"
        for name, b, a, r, key in rows
    )
    note = f"<p class='muted'>{_e(acc.note)}</p>" if acc.note else ""
    where = f" on {_e(acc.eval_images)}" if acc.eval_images else ""
    return (
        f"<h2>Before and after</h2><p>target {report.target:.4f} of {_e(report.by)}, achieved "
        f"<b id='achieved'>{report.achieved:.4f}</b>; accuracy{where or ' not measured (no evaluation images)'}</p>"
        f"<table><tr><th></th><th>before</th><th>after</th><th>ratio / note</th></tr>{cells}</table>{note}"
    )


def _channels(report: ShrinkReport) -> str:
    if not report.groups:
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        png = plot_channels(report.groups, Path(tmp) / "channels.png", f"{report.spec.arch}: channels per group")
        image = _inline_png(png)
    rows = "".join(
        f"<tr><td>{_e(g['group'])}</td><td>{g['before']}</td><td>{g['after']}</td></tr>" for g in report.groups
    )
    config = report.config
    return (
        "<h2>Where the channels went</h2>"
        f"<p>allocation <b>{_e(report.allocation.get('strategy', ''))}</b>, criterion "
        f"<b>{_e(config.get('criterion', ''))}</b>, schedule <b>{_e(config.get('schedule', ''))}</b></p>"
        f"{image}<details><summary>every group</summary><table><tr><th>group</th><th>before</th>"
        f"<th>after</th></tr>{rows}</table></details>"
    )


def _latency(report: ShrinkReport) -> str:
    latency = report.latency
    if not latency:
        return ""
    rows = "".join(
        f"<tr><td>{i + 1}</td><td>{_fmt(r.get('round_target'))}</td><td>{c.get('attempt', '')}</td>"
        f"<td>{_fmt(c.get('predicted'))}</td><td>{_fmt(c.get('measured', 'not timed'))}</td>"
        f"<td>{_fmt(c.get('measured_ms', ''))}</td><td>{_calls(c)}</td></tr>"
        for i, r in enumerate(latency.get("rounds") or [])
        for c in r.get("checks") or [{"predicted": r.get("predicted")}]  # a round before the last: predicted
    )
    final = latency.get("final_check")
    if final:  # the written model against the unpruned one: the ratio the user asked for
        rows += (
            f"<tr><td>final check</td><td>{_fmt(report.target)}</td><td></td><td></td>"
            f"<td>{_fmt(final.get('measured'))}</td><td>{_fmt(final.get('measured_ms'))}</td><td>{_calls(final)}</td></tr>"
        )
    where = ", ".join(f"{k} {latency[k]}" for k in ("runtime", "precision", "threads", "machine") if k in latency)
    columns = ("round", "target", "attempt", "predicted", "measured", "measured ms", "timing calls")
    head = "".join(f"<th>{h}</th>" for h in columns)
    table = f"<table><tr>{head}</tr>{rows}</table>" if rows else ""
    return (
        f"<h2>Latency, measured</h2><p>{_e(where)}: predicted and measured latency as a share of the model each "
        f"round started from (the unpruned one in round 1), timed interleaved against the unpruned model; "
        f"rounds before the last are predicted only; the final check is the written model's share of the "
        f"unpruned model's latency. Each measurement is the median of separate timing calls, whose range "
        f"shows how much one call can be trusted on this machine</p>{table}"
    )


def _retraining(report: ShrinkReport) -> str:
    check = report.retraining.get("check")
    if not check:
        return ""
    picture = ""
    if len(check.get("history") or []) > 1:  # a curve needs more than the end of retraining
        with tempfile.TemporaryDirectory() as tmp:
            picture = _inline_png(plot_retrain_check(check, Path(tmp) / "retraining.png"))
    return (
        f"<h2>Retraining, judged on the validation images</h2><p id='retrain-check'>{_e(retrain_check_line(check))}"
        f"</p>{picture}"
    )


def _calls(check: dict[str, Any]) -> str:
    """The lowest and highest share of the check's timing calls (reports before they were kept: blank)."""
    calls = check.get("calls")
    return f"{min(calls):.3f}–{max(calls):.3f}" if calls else ""


def _classes(worst: list[dict[str, Any]] | None, title: str = "The most damaged classes") -> str:
    if not worst:
        return ""
    rows = "".join(
        f"<tr><td>{_e(c['name'])}{' <span class=muted>(too few images to judge)</span>' if c['too_few_images'] else ''}"
        f"</td><td>{c['images']}</td><td>{c['top1_before']:.3f}</td><td>{c['top1_after']:.3f}</td>"
        f"<td class='{'bad' if c['top1_change'] < 0 else 'good'}'>{c['top1_change']:+.3f}</td></tr>"
        for c in worst
    )
    return (
        f"<h2>{_e(title)}</h2><table id='worst-classes'><tr><th>class</th><th>images</th><th>top-1 before</th>"
        f"<th>top-1 after</th><th>change</th></tr>{rows}</table>"
    )


def _comparison(folder: Path) -> str:
    data = json.loads((folder / "compare.json").read_text())
    models = "".join(
        f"<tr><td>{_e(m['label'])}</td><td>{_e(m['kind'])}</td><td>{m['top1']:.3f}</td>"
        f"<td>{m['agreement_with_first']:.3f}</td></tr>"
        for m in data["models"]
    )
    pictures = "".join(_inline_png(folder / name) for name in ("classes.png", "pie.png") if (folder / name).exists())
    return (
        f"<h2>What pruning broke ({data['images']} images)</h2>"
        f"<table><tr><th>model</th><th>runs in</th><th>top-1</th><th>same top-1 as first</th></tr>{models}</table>"
        f"<p>pruning-identified exemplars: <b id='pie-count'>{data['pie_count']}</b> of {data['images']} images "
        f"({data['pie_share']:.1%}): {_e(data['pie_definition'])}</p>"
        + _classes(data["classes"][:10], "The most damaged classes (compare)")
        + pictures
    )


def _provenance(report: ShrinkReport) -> str:
    command = f"<pre id='command'>{_e(report.command)}</pre>" if report.command else ""
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings_s.items())
    return f"<h2>How it was made</h2>{command}<p class='muted'>{_e(versions)}</p><p class='muted'>{_e(timings)}</p>"


def _inline_png(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<p><img alt='{_e(Path(path).stem)}' src='data:image/png;base64,{data}'></p>"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else _e(str(value))


def _id(key: str) -> str:
    return key.replace(" ", "-").replace("(", "").replace(")", "")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
