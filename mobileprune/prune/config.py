"""`ShrinkConfig`: every setting of a shrink run, checked before any work starts.

Plug-in settings travel as options dictionaries (`criterion_options`, `allocation_options`,
`schedule_options`) checked against what the chosen plug-in declares, so a new criterion's knobs never
become fields here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import UserError
from ..train.distill import DISTILL_LOSSES
from ..train.held_out import check_patience
from ..train.loop import TrainConfig
from .allocate import ALLOCATIONS
from .cost import COST_MODELS
from .criteria import CRITERIA
from .schedules import SCHEDULES

AUTO = "auto"
AUTO_ROUNDS = 4  # --rounds auto on a deep cut: the one round count measured against a single measurement
DEEP_CUT = 0.7  # --rounds auto re-measures when the target keeps this share of the cost or less


@dataclass
class ShrinkConfig:
    target: float
    by: str = "params"  # a cost model: params, macs
    criterion: str = "l1"
    allocation: str = "auto"  # sensitivity with images, magnitude without (see allocation_name)
    schedule: str = "oneshot"  # reconstruction does per-layer repair for free; layerwise costs steps x layers
    round_to: int | str = 8  # or "auto" with --by latency: the multiple the runtime is fastest at
    steps_per_layer: int = 50
    epochs: float = 0.0
    retrain_check: bool = True  # keep the fine-tune's best epoch if the validation images say it helped
    patience: int = 0  # with the check: stop the fine-tune after this many epochs without a better score (0: never)
    distill: bool = False
    batch_size: int = 32
    sparsity_train: float = 0.0  # epochs of sparsity training before pruning (bn: L1 on BN scales; sss: gates)
    l1_gamma: float = 1e-4
    calibration_images: int = 32
    reconstruct: bool = True  # with images: re-fit every dense layer to the unpruned outputs after pruning
    reconstruct_images: int = 512  # all of a typical few-hundred-photo set: the late layers overfit on fewer
    reconstruct_mirror: bool = True  # also fit on each image's mirror image (twice the samples, same domain)
    rounds: int | str = AUTO  # allocate and prune in this many steps, re-measuring in between (see rounds_for)
    eval_batches: int = 4  # quick evaluation after each layer (layerwise schedule)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    device: str = "cpu"
    workers: int = 1
    criterion_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"pulls_per_channel": 3} for ucb
    allocation_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"max_fraction": 0.5} for global
    schedule_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"slices": 8} for greedy
    cost_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"runtime": "litert", "threads": 1}

    def validate(self) -> None:
        check_target(self.target)
        if self.by not in COST_MODELS:
            raise UserError(f"--by must be one of {', '.join(COST_MODELS.names())}, not '{self.by}'")
        known = COST_MODELS.options(self.by)
        unknown = [k for k in self.cost_options if k not in known]
        if unknown:
            raise UserError(f"--{unknown[0].replace('_', '-')} applies to --by latency, not --by {self.by}")
        check = getattr(COST_MODELS.get(self.by), "check", None)
        if check is not None:
            check(self.cost_options)
        check_patience(self.patience, self.retrain_check)
        if self.sparsity_train < 0 or self.l1_gamma < 0:
            raise UserError("--sparsity-train and --l1-gamma must not be negative")
        if self.train.optimizer not in ("adamw", "sgd"):
            raise UserError(f"--optimizer must be 'adamw' or 'sgd', not '{self.train.optimizer}'")
        if self.train.distill_loss not in DISTILL_LOSSES:
            choices = " or ".join(f"'{k}'" for k in DISTILL_LOSSES)
            raise UserError(f"--distill-loss must be {choices}, not '{self.train.distill_loss}'")
        if min(self.train.mixup, self.train.label_weight, self.train.feature_weight) < 0:
            raise UserError("--mixup, --label-weight and --feature-weight must not be negative")
        if not 0 < self.train.crop_scale <= 1:
            raise UserError(f"--crop-scale must be in (0, 1], not {self.train.crop_scale}")
        if self.train.amp and not self.device.startswith("cuda"):
            raise UserError("--amp (mixed precision) needs --device cuda")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {self.device}: this machine has no usable GPU; use --device cpu")
        if self.workers < 0:
            raise UserError(f"--workers must be 0 or more, not {self.workers}")
        if self.rounds != AUTO and (not isinstance(self.rounds, int) or self.rounds < 1):
            raise UserError(f"--rounds must be a whole number of at least 1 or auto, not {self.rounds}")
        if self.reconstruct_images < 1:
            raise UserError("--reconstruct-images must be at least 1")
        if self.round_to == AUTO:
            if not hasattr(COST_MODELS.get(self.by), "preferred_multiple"):
                raise UserError(f"--round-to auto measures the runtime: it needs --by latency, not --by {self.by}")
        elif not isinstance(self.round_to, int) or self.round_to < 1:
            raise UserError(f"--round-to must be a whole number of at least 1 or auto, not {self.round_to}")
        if self.batch_size < 1 or self.calibration_images < 1 or self.steps_per_layer < 0 or self.epochs < 0:
            raise UserError(
                "--batch-size and --calibration-images must be at least 1, --epochs and --steps-per-layer 0"
            )
        # building each plug-in once checks its name and options (each raises a one-line UserError)
        criterion = self.make_criterion()
        if self.allocation != AUTO:
            self.make_allocation()
        elif self.allocation_options:
            raise UserError("--allocation-option needs a named --allocation, not auto")
        self.make_schedule()
        if criterion.sparsity_training == "required" and self.sparsity_train <= 0:
            raise UserError(
                f"the {self.criterion} criterion ranks by scales learned in training: "
                "pass --data DIR and --sparsity-train EPOCHS"
            )

    def make_criterion(self):
        return CRITERIA.create(self.criterion, offered={"seed": self.seed}, **self.criterion_options)

    def allocation_name(self, has_data: bool = True) -> str:
        """`auto` is sensitivity when there are images to measure on, magnitude (data-free) when not."""
        if self.allocation != AUTO:
            return self.allocation
        return "sensitivity" if has_data else "magnitude"

    def make_allocation(self, has_data: bool = True):
        name = self.allocation_name(has_data)
        return ALLOCATIONS.create(name, offered={"seed": self.seed}, **self.allocation_options)

    def rounds_for(self, has_data: bool = True) -> int:
        """`auto`: several rounds only where re-measuring has something to correct.

        Sensitivity measured once on the unpruned net treats each group's damage as independent; on a deep
        cut it is not, and measuring again on the pruned (and reconstructed) net re-ranks the groups. A
        gentle cut, a data-free proxy, an allocation that does not measure, or a schedule that decides its
        own amounts gains nothing from rounds, and each round costs a sensitivity pass and a reconstruction.
        A latency target (`--by latency`) is cut the same way: its later rounds predict from the first
        round's tables and only the last is timed (`LatencyCost.for_pruned`).
        """
        if self.rounds != AUTO:
            return int(self.rounds)
        measures = has_data and self.allocation_name(has_data) == "sensitivity" and self.schedule == "oneshot"
        return AUTO_ROUNDS if measures and self.target <= DEEP_CUT else 1

    def make_schedule(self):
        return SCHEDULES.create(self.schedule, offered={"seed": self.seed}, **self.schedule_options)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_target(target: float) -> float:
    if not isinstance(target, (int, float)) or target != target or not 0 < target <= 1:
        raise UserError(f"--target must be a number in (0, 1], the fraction to keep; got {target}")
    return float(target)


def parse_target(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--target must be a number in (0, 1], the fraction to keep; got '{text}'") from None
    return check_target(value)
