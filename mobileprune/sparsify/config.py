"""`SparsifyConfig`: every setting of a sparsify run, checked before any work starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import UserError
from ..train.held_out import check_patience
from ..train.loop import TrainConfig
from .methods import METHODS
from .selection import SCOPES


@dataclass
class SparsifyConfig:
    sparsity: float  # fraction of zero weights in the sparsifiable layers (masks.sparse_layers)
    method: str = "gradual"
    scope: str = "erk"  # or "layer" (every layer equally sparse) or "global" (one magnitude threshold)
    epochs: float = 0.0  # fine-tune budget, in passes over --data
    batch_size: int = 32
    calibration_images: int = 128  # obs: images whose activations make each layer's Hessian
    distill: bool = False
    retrain_check: bool = True  # keep a one-shot method's fine-tune's best epoch if it helped
    patience: int = 0  # with the check: stop the fine-tune after this many epochs without a better score (0: never)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-4))
    seed: int = 0
    device: str = "cpu"
    workers: int = 1
    method_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"rounds": 3} for lottery

    def validate(self) -> None:
        check_sparsity(self.sparsity)
        if self.scope not in SCOPES:
            raise UserError(f"--scope must be one of {', '.join(SCOPES)}, not '{self.scope}'")
        if self.epochs < 0 or self.batch_size < 1 or self.calibration_images < 1:
            raise UserError("--epochs must not be negative; --batch-size and --calibration-images at least 1")
        check_patience(self.patience, self.retrain_check)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {self.device}: this machine has no usable GPU; use --device cpu")
        if self.train.optimizer not in ("adamw", "sgd"):
            raise UserError(f"--optimizer must be 'adamw' or 'sgd', not '{self.train.optimizer}'")
        self.make_method()  # checks the name and its options (one-line UserErrors)

    def make_method(self):
        return METHODS.create(self.method, offered={"seed": self.seed}, **self.method_options)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_sparsity(value: float) -> float:
    if not isinstance(value, (int, float)) or value != value or not 0 <= value < 1:
        raise UserError(f"--sparsity must be a number in [0, 1), the fraction of weights to zero; got {value}")
    return float(value)


def parse_sparsity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(
            f"--sparsity must be a number in [0, 1), the fraction of weights to zero; got '{text}'"
        ) from None
    return check_sparsity(value)
