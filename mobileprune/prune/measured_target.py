"""Hitting a measured target: allocate by prediction, time the result, correct the target, allocate again.

A latency model predicts; the runtime decides. After each allocation the cost model times a copy pruned
that way against the unpruned model (interleaved), and if the measured ratio misses the request by more
than the tolerance, the allocation is redone for a target scaled by request/measured (the prediction's
error is mostly a common factor). A few rounds at most; the closest allocation wins, and a miss is said
plainly in the log and the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..progress import Progress
from .allocate import Allocation
from .config import AUTO

if TYPE_CHECKING:
    from .pipeline import ShrinkRun

TOLERANCE = 0.05  # relative to the requested ratio: 0.475–0.525 for 0.5
ATTEMPTS = 4


def meet_measured_target(
    cost: Any, allocate_at: Callable[[float], Allocation], target: float, progress: Progress
) -> tuple[Allocation, list[dict]]:
    """The allocation whose *measured* cost ratio is nearest `target`, and one log entry per attempt."""
    aim, checks, best = target, [], None
    for attempt in range(1, ATTEMPTS + 1):
        allocation = allocate_at(aim)
        measured, ms = cost.measure(allocation.removed)
        predicted = allocation.ratio
        checks.append(
            {
                "attempt": attempt,
                "aimed_at": round(aim, 4),
                "predicted": round(predicted, 4),
                "measured": round(measured, 4),
                "measured_ms": round(ms, 4),
            }
        )
        progress.log(
            f"latency check {attempt}: predicted {predicted:.3f}, measured {measured:.3f} of the unpruned model "
            f"(asked {target:.3f})"
        )
        if best is None or abs(measured - target) < abs(best[1] - target):
            best = (allocation, measured)
        if abs(measured / target - 1) <= TOLERANCE:
            break
        step = min(1.5, max(2 / 3, target / measured))  # one noisy measurement must not throw the aim far off
        aim = min(1.0, max(0.01, aim * step))
    allocation, measured = best
    if abs(measured / target - 1) > TOLERANCE:
        progress.log(
            f"[yellow]could not get closer than {measured:.3f} to {target:.3f} in {ATTEMPTS} measured attempts: "
            "the runtime's latency does not follow the channel counts closely enough here (noise "
            f"{cost.noise:.1%})[/yellow]"
        )
    return allocation, checks


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


def kept_check(entry: dict) -> dict:
    """The attempt a round kept: the measured one nearest its target."""
    return min(entry["checks"], key=lambda c: abs(c["measured"] - entry["round_target"]))


def latency_report(run: ShrinkRun) -> dict[str, Any]:
    if not run.latency_checks:
        return {}
    auto = {"round_to": run.round_to, "round_to_auto": run.round_to_note} if run.round_to_note else {}
    kept = kept_check(run.latency_checks[-1])
    return {**run.cost.describe(), **auto, "rounds": run.latency_checks, "measured_ms": kept["measured_ms"]}
