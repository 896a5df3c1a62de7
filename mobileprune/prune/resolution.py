"""Input resolution as part of the cut: fewer pixels before fewer filters.

A CNN's MACs scale with its input's pixels, and a network that ends in global pooling runs at any size,
so feeding it smaller frames removes work without touching a weight. On the held-out ImageNet protocol
(README, "Fewer pixels, fewer filters, or both") this beat every filter-pruning method at 0.5 and 0.7 of
the MACs, and a light filter cut on top of a lower resolution did best. `--resolution N` runs the result
at N px and counts `--target` against the model at its own input size: the filters take what the
resolution leaves. Applied before the images are opened, so training, calibration and evaluation all
see N-px images; the output's spec says N, so `convert` writes N-px app files.

`--resolution auto` picks the size: the smallest multiple of the network's stride (32) whose pixels alone
keep at least the MACs target, so the filters take the smallest cut on top. In that measurement the
larger the filters' share of a cut the worse, at 0.5 and 0.7 of the MACs, and sizes between multiples of
32 did worse than their neighbours. The rule is that table's, not a search: it prunes once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from ..artifacts.loading import run_at
from ..errors import UserError
from .cost import Cost, count_cost

if TYPE_CHECKING:
    from ..artifacts import LoadedModel
    from .config import ShrinkConfig
    from .report import ShrinkReport

ROUNDING = 1e-3  # a filter target this far above 1 is the resolution alone meeting the target: no filters go
AUTO = "auto"
STRIDE = 32  # px; MobileNets, EfficientNets and ResNets halve five times: sizes between multiples misalign


@dataclass(frozen=True)
class ResolutionCut:
    """What `--resolution` changed: the sizes, the MACs the size alone keeps, and the user's target."""

    original: int  # px, the model's own input size
    size: int  # px, what the result runs at
    full: Cost  # the unpruned model at `original`
    kept: float  # MACs at `size` / MACs at `original`
    target: float  # --target, of the model at `original`
    filters: float  # the filters' target, of the model at `size`

    def annotate(self, report: ShrinkReport) -> None:
        """Make `report` count against the model at its own size, keeping the filters' part beside it."""
        report.resolution = {
            "from_px": self.original,
            "to_px": self.size,
            "macs_kept_by_resolution": round(self.kept, 4),
            "filters": {"target": report.target, "achieved": report.achieved},
            "note": f"'before' counts the unpruned model at {self.original} px; its top-1 is at {self.size} px",
        }
        report.before = self.full
        report.target = self.target
        if report.by == "macs":
            report.achieved = round(report.after.macs / self.full.macs, 4)

    def describe(self) -> str:
        return (
            f"resolution {self.original} → {self.size} px keeps {self.kept:.3f} of the MACs; "
            f"the filters' target is {self.filters:.4f} of the {self.size}-px model"
        )


def cut_resolution(
    loaded: LoadedModel, config: ShrinkConfig, size: int | str
) -> tuple[ShrinkConfig, ResolutionCut | None]:
    """Switch `loaded` to `size` px (or `"auto"`); the config whose target is the filters' share of what is left.

    None for the cut when `"auto"` keeps the model's own size. Call it before opening the images (they
    are resized for the spec's input size).
    """
    if size == AUTO:
        chosen = auto_size(loaded, config)
        if chosen is None:
            return config, None
        size = chosen
    if config.by == "latency":
        raise UserError(
            "--resolution counts the target in MACs or parameters; with --by latency pass --input-size N and "
            "a --target of the N-px model's latency (time both sizes with `mobileprune bench`)"
        )
    original = loaded.spec.input_size
    full = count_cost(loaded.model, torch.randn(1, 3, original, original))
    run_at(loaded, size, "--resolution")
    now = count_cost(loaded.model, torch.randn(1, 3, size, size))
    kept = now.macs / full.macs
    filters = config.target / kept if config.by == "macs" else config.target  # parameters do not scale with pixels
    if filters > 1 + ROUNDING:
        raise UserError(
            f"--resolution {size} alone keeps {kept:.3f} of the MACs at {original} px, less than --target "
            f"{config.target:g}: use --target {kept:.3f} or lower, or a larger --resolution"
        )
    filters = min(filters, 1.0)
    return replace(config, target=filters), ResolutionCut(original, size, full, kept, config.target, filters)


def auto_size(loaded: LoadedModel, config: ShrinkConfig) -> int | None:
    """The smallest multiple of STRIDE below the model's size whose MACs alone keep ≥ the target; None: none
    does, or the target does not count MACs (parameters do not shrink with pixels)."""
    if config.by == "latency":
        raise UserError(
            "--resolution auto counts MACs: use --by macs; for a latency target time the sizes with `mobileprune "
            "bench` and pass --input-size N with a --target of the N-px model's latency"
        )
    if config.by != "macs":
        return None
    original = loaded.spec.input_size
    full = count_cost(loaded.model, torch.randn(1, 3, original, original)).macs
    for size in range(STRIDE, original, STRIDE):
        try:
            macs = count_cost(loaded.model, torch.randn(1, 3, size, size)).macs
        except RuntimeError:  # too small for this network (a kernel larger than its feature map)
            continue
        if macs / full >= config.target - ROUNDING:
            return size
    return None


def kept_size_reason(loaded: LoadedModel, config: ShrinkConfig) -> str:
    """Why `--resolution auto` left the model at its own size, for the log."""
    if config.by != "macs":
        return (
            f"--resolution auto: {config.by} do not shrink with pixels; the model stays at {loaded.spec.input_size} px"
        )
    return (
        f"--resolution auto: no multiple of {STRIDE} px below {loaded.spec.input_size} keeps {config.target:g} of "
        "the MACs; the model keeps its size and filters take the whole cut"
    )
