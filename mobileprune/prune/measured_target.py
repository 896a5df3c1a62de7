"""Hitting a measured target: allocate by prediction, time the result, correct the target, allocate again.

A latency model predicts; the runtime decides. After each allocation the cost model times a copy pruned
that way against the unpruned model (interleaved), and if the measured ratio misses the request by more
than the tolerance, the allocation is redone for a target scaled by request/measured (the prediction's
error is mostly a common factor). It aims within half the tolerance, so that a later timing of the same
model (the final check, on a machine whose speed drifts by a few percent) still lands inside it. A few
attempts at most; the closest allocation wins, and a miss is said plainly in the log and the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..progress import Progress
from .allocate import Allocation, AllocationStrategy, allocate
from .config import AUTO
from .cost import COST_MODELS
from .cost.latency import Timing

if TYPE_CHECKING:
    from .pipeline import ShrinkRun


class _HasRatio(Protocol):
    ratio: float  # the predicted cost ratio


Predicted = TypeVar("Predicted", bound=_HasRatio)

TOLERANCE = 0.05  # relative to the requested ratio: 0.475–0.525 for 0.5
AIM = TOLERANCE / 2  # corrected until this close, while attempts are left
ATTEMPTS = 4


def meet_measured_target(
    allocate_at: Callable[[float], Predicted],
    measure: Callable[[Predicted], Timing],
    target: float,
    progress: Progress,
    noise: float,
) -> tuple[Predicted, list[dict]]:
    """The candidate whose *measured* cost ratio is nearest `target`, and one log entry per attempt.

    `allocate_at(aim)` makes a candidate predicted at `aim` (an allocation, or a model pruned by another
    tool: the benchmarks hold Torch-Pruning's recipes to the same measured target this way); `measure`
    times it as a share of the unpruned model, with its ms and every timing call's share (kept in the
    entry: their spread is what one check can be trusted to). `noise` (the model against itself, within a
    call) is quoted when the target is missed.
    """
    aim, checks, best = target, [], None
    for attempt in range(1, ATTEMPTS + 1):
        candidate = allocate_at(aim)
        timed = measure(candidate)
        measured, predicted = timed.ratio, candidate.ratio
        checks.append(
            {
                "attempt": attempt,
                "aimed_at": round(aim, 4),
                "predicted": round(predicted, 4),
                "measured": round(measured, 4),
                "measured_ms": round(timed.ms, 4),
                "calls": [round(r, 4) for r in timed.calls],
            }
        )
        progress.log(
            f"latency check {attempt}: predicted {predicted:.3f}, measured {measured:.3f} of the unpruned model "
            f"({_calls(timed)}; asked {target:.3f})"
        )
        if best is None or abs(measured - target) < abs(best[1] - target):
            best = (candidate, measured)
        if abs(measured / target - 1) <= AIM:
            break
        step = min(1.5, max(2 / 3, target / measured))  # one noisy measurement must not throw the aim far off
        aim = min(1.0, max(0.01, aim * step))
    candidate, measured = best
    if abs(measured / target - 1) > TOLERANCE:
        progress.log(
            f"[yellow]could not get closer than {measured:.3f} to {target:.3f} in {ATTEMPTS} measured attempts: "
            "the runtime's latency does not follow the channel counts closely enough here (noise "
            f"{noise:.1%})[/yellow]"
        )
    return candidate, checks


def allocate_to_measured_target(
    run: ShrinkRun, strategy: AllocationStrategy, target: float, timed: bool = True
) -> tuple[Allocation, dict]:
    """`--by latency`'s allocation: damage per predicted ms, or per MAC, or both (`allocate_per`), each brought
    to the *measured* target; with both, the one its strategy predicts less damage for wins.

    Why both: per-layer latency tables are fitted from a few timings each, so the milliseconds a group saves
    are estimates, while MACs are exact; at the same measured speed the cheaper-looking layers by ms may
    be the more sensitive ones. Without a damage model (uniform, magnitude) damage per ms is used.
    `timed=False` (a round before the last of `--rounds`) stops at the predicted target: only where the
    model ends up must the runtime agree.
    """
    per = run.cost.allocate_per
    has_damage = strategy.predicted_damage({}) is not None
    names = ("ms", "macs") if per == AUTO and has_damage else ("ms",) if per == AUTO else (per,)
    offered = {"model": run.model, "example": run.example, "groups": run.graph.groups, "progress": run.progress}
    candidates: dict[str, tuple[Allocation, list[dict], float | None]] = {}
    for name in names:
        denominator = run.cost if name == "ms" else COST_MODELS.create("macs", offered=offered)

        def allocate_at(aim: float, denominator=denominator, name: str = name) -> Allocation:
            found = allocate(run.graph.groups, denominator, strategy, aim, run.round_to)
            ms = run.cost.predict(found.removed)  # every candidate's prediction in milliseconds
            return Allocation(found.removed, ms, ms / run.cost.baseline(), f"{found.strategy}, damage per {name}")

        if timed:
            run.progress.log(f"--by latency: allocating by damage per {name}, then timing it")
            allocation, checks = meet_measured_target(
                allocate_at, lambda found: run.cost.measure(found.removed), target, run.progress, run.cost.noise
            )
        else:
            allocation, checks = allocate_at(target), []
        candidates[name] = (allocation, checks, strategy.predicted_damage(allocation.removed))
    best = min(candidates, key=lambda n: candidates[n][2] or 0.0)
    entry = {"round_target": round(target, 4), "checks": candidates[best][1], "allocated_per": best}
    if not timed:
        entry["predicted"] = round(candidates[best][0].ratio, 4)
    if len(candidates) > 1:
        entry["candidates"] = {
            name: {
                "predicted_damage": float(f"{damage:.6g}"),
                **(
                    {"measured": kept_check({"round_target": target, "checks": c})["measured"]}
                    if c
                    else {"predicted": round(found.ratio, 4)}
                ),
            }
            for name, (found, c, damage) in candidates.items()
        }
        run.progress.log(
            "--by latency: "
            + ", ".join(
                f"per {n}: predicted damage {v['predicted_damage']:.4f}" for n, v in entry["candidates"].items()
            )
            + f"; kept per {best}"
        )
    return candidates[best][0], entry


def resolve_round_to(run: ShrinkRun) -> int:
    """`--round-to` as a number; `auto` asks the (measured) cost model which channel multiple its runtime likes."""
    if run.config.round_to != AUTO:
        return int(run.config.round_to)
    if run.round_to_note:  # measured in the first round already
        return run.round_to
    multiple, note = run.cost.preferred_multiple()
    run.round_to_note = note
    run.progress.log(f"--round-to auto: {multiple} ({note})")
    return multiple


def _calls(timed: Timing) -> str:
    return f"median of {len(timed.calls)} calls, {min(timed.calls):.3f}–{max(timed.calls):.3f}"


def kept_check(entry: dict) -> dict:
    """The attempt a round kept: the measured one nearest its target (a round that was not timed has none)."""
    return min(entry["checks"], key=lambda c: abs(c["measured"] - entry["round_target"]))


def recheck_latency(run: ShrinkRun) -> None:
    """Time the model about to be written against the unpruned one once more: the machine may have drifted
    since the allocation was timed. Said plainly if it misses."""
    if not run.latency_checks or run.unpruned is None:
        return
    timed = run.cost.compare(run.unpruned, run.model.eval())
    measured, ms = timed.ratio, timed.ms
    ok = abs(measured / run.config.target - 1) <= TOLERANCE
    calls = [round(r, 4) for r in timed.calls]
    run.latency_final = {
        "measured": round(measured, 4),
        "measured_ms": round(ms, 4),
        "calls": calls,
        "within_tolerance": ok,
    }
    note = (
        f"final check: {measured:.3f} of the unpruned model's latency, {ms:.3f} ms ({_calls(timed)}; "
        f"asked {run.config.target:.3f})"
    )
    run.progress.log(
        note
        if ok
        else f"[yellow]{note}: outside ±{TOLERANCE:.0%}; the machine's speed may have drifted since the "
        "allocation was timed[/yellow]"
    )


def latency_report(run: ShrinkRun) -> dict[str, Any]:
    if not run.latency_checks:
        return {}
    auto = {"round_to": run.round_to, "round_to_auto": run.round_to_note} if run.round_to_note else {}
    kept = kept_check(run.latency_checks[-1])
    final = {"final_check": run.latency_final} if run.latency_final else {}
    measured_ms = run.latency_final["measured_ms"] if run.latency_final else kept["measured_ms"]
    return {**run.cost.describe(), **auto, "rounds": run.latency_checks, **final, "measured_ms": measured_ms}
