"""The one retrain/evaluate loop every schedule reuses (torchvision's reference loop, cut to what pruning needs).

Batch-norm layers stay in eval mode while retraining. Small CPU batches give noisy batch statistics,
and checkpoints with folded batch norm (identity BN, as in quantization-derived weights) would be
destroyed by re-estimating them. Only weights learn; running statistics stay as trained.

The default optimiser is AdamW at a small learning rate: recovery fine-tuning of a pretrained network
wants small, per-weight-scaled steps, and SGD with momentum at the usual rates wrecked the folded-BN
shared MobileNetV2 within a few steps of distilling it onto itself. Distillation losses are in
`distill.py`. `student_dropout=False` turns the student's dropout off while it distils (the teacher
answers without dropout); it did not measurably change held-out accuracy, so dropout stays on by default.
Measurements behind these choices: benchmarks/results/shrink_mobilenet_v2*.json and cli_recovery.json.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..channels_last import channels_last
from ..errors import UserError
from ..progress import Progress
from . import distributed
from .class_counts import ClassCounts
from .data import Batch
from .distill import distillation_loss
from .features import FeatureMatch


class StepRegulariser(Protocol):
    """Something that acts after every optimiser step (sparsity training's proximal step, say)."""

    def zero_grad(self) -> None: ...

    def step(self) -> None: ...


@dataclass
class TrainConfig:
    optimizer: str = "adamw"  # or "sgd" (nesterov momentum)
    lr: float = 3e-5
    momentum: float = 0.9
    weight_decay: float = 4e-5
    distill: bool = False
    temperature: float = 2.0
    distill_loss: str = "centered"  # or "kl" (plain Hinton KL); see distill.py
    mixup: float = 0.0  # Beta(a, a) mixing of image pairs within a batch; 0 = off (teacher sees the same mix)
    label_weight: float = 0.0  # distillation with labelled images: loss = KD + label_weight * cross-entropy
    crop_scale: float = 0.5  # RandomResizedCrop keeps at least this share of the image
    feature_weight: float = 0.0  # distillation: add this times the layer-output loss (train/features.py)
    student_dropout: bool = True  # distillation: False turns the student's dropout off while it learns
    amp: bool = False  # CUDA: bfloat16 autocast for forward passes (weights and optimiser stay float32)


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float
    images: int
    per_class: ClassCounts | None = field(default=None, compare=False, repr=False)  # not in report.json

    def to_json(self) -> dict[str, float]:
        return {"top1": round(self.top1, 4), "top5": round(self.top5, 4), "images": self.images}


class Trainer:
    """Runs training steps (labels or distillation) and evaluation; counts skipped images.

    Its state (`state_dict`) is everything a resumed run needs to take the next step exactly as the
    uninterrupted run would: steps done, the data position (epoch, batch; see sampling.py) and, inside a
    `train` call, that call's step and optimiser state. `on_step` is called after every optimiser step
    (checkpoints hang there).
    """

    def __init__(
        self,
        train_loader: DataLoader,
        config: TrainConfig,
        teacher: nn.Module | None = None,
        device: str = "cpu",
    ):
        self.loader = train_loader
        self.config = config
        self.teacher = teacher.eval().to(device) if teacher is not None else None
        self.device = device
        self.skipped = 0
        self.steps_done = 0
        self.epoch, self.batch = 0, 0  # the next batch to train on
        self.features: FeatureMatch | None = None  # layer outputs to match (set once pruning is done)
        self.on_step: Callable[[], None] | None = None
        self._call: dict | None = None  # inside train(): {"step": next step, "optimizer": ...}
        self._resume_call: dict | None = None  # a saved call to go on with at the next train()
        self._batches = self._forever()

    def state_dict(self) -> dict:
        state = {"steps_done": self.steps_done, "skipped": self.skipped, "epoch": self.epoch, "batch": self.batch}
        if self._call is not None:
            state["call"] = {"step": self._call["step"], "optimizer": self._call["optimizer"].state_dict()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.steps_done, self.skipped = state["steps_done"], state["skipped"]
        self.epoch, self.batch = state["epoch"], state["batch"]
        self._resume_call = state.get("call")
        self._batches = self._forever()  # restart the data at the saved position

    def _forever(self) -> Iterator[Batch]:
        sampler = self.loader.batch_sampler
        while True:
            sampler.resume_at(self.epoch, self.batch)
            readable, whole_pass = False, self.batch == 0
            for batch in self.loader:
                self.batch += 1
                self.skipped += batch.skipped
                if batch.images.numel():
                    readable = True
                    yield batch
            if whole_pass and not readable:  # a whole pass without one image: another would not find one either
                raise UserError(
                    f"none of the {len(self.loader.dataset)} training images could be read (corrupt or unsupported?)"
                )
            self.epoch, self.batch = self.epoch + 1, 0

    def train(
        self,
        model: nn.Module,
        steps: int,
        tick: Callable[[float], None] | None = None,
        cosine: bool = False,
        regulariser: StepRegulariser | None = None,
        after_step: Callable[[int], bool | None] | None = None,
    ) -> float:
        """`steps` optimiser steps on `model`; a new optimiser each call, since pruning replaces weights.

        A sparsity `regulariser` (see prune/sparsity.py) takes its proximal step after every optimiser step.
        A resumed call (see `load_state_dict`) starts at its saved step with its saved optimiser state.
        `after_step` gets the number of this call's steps done after each (before `on_step` checkpoints);
        when it returns True, the call ends there (an early stop: the checkpoint still sees that step).
        """
        if steps <= 0:
            return float("nan")
        cfg = self.config
        cuda = self.device.startswith("cuda")
        home = _device_of(model)  # pruning works on the CPU; only the steps run on --device
        model.to(self.device).train()
        if self.teacher is not None:
            self.teacher.to(self.device)
        if cuda:
            model.to(memory_format=torch.channels_last)
        _freeze(model, nn.modules.batchnorm._BatchNorm)
        if self.teacher is not None and not cfg.student_dropout:
            _freeze(model, nn.modules.dropout._DropoutNd)
        opt = make_optimizer(model, cfg)
        first = 0
        if self._resume_call is not None:
            first = self._resume_call["step"]
            opt.load_state_dict(self._resume_call["optimizer"])
            self._resume_call = None
        self._call = {"step": first, "optimizer": opt}
        layout, batch = contextlib.ExitStack(), None
        if not cuda and first < steps:  # CPU: channels-last weights, tried on the first batch (before DDP sees them)
            batch = next(self._batches)
            teacher = [self.teacher] if self.teacher is not None else []
            layout.enter_context(channels_last(batch.images, model, *teacher))
        total, done = 0.0, 0
        try:
            wrapped = distributed.wrap(model, self.device)
            for step in range(first, steps):
                if cosine:
                    for g in opt.param_groups:
                        g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
                if batch is None:
                    batch = next(self._batches)
                x = batch.images.to(self.device, non_blocking=True)
                labels = batch.labels.to(self.device, non_blocking=True)
                if cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                x, mixed = self._mix(x, labels)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and cuda):
                    logits = wrapped(x)
                    loss = self._loss(logits, x, mixed)
                opt.zero_grad(set_to_none=True)
                if regulariser:
                    regulariser.zero_grad()
                (loss * distributed.global_batch_share(len(x), x.device)).backward()
                opt.step()
                if regulariser:
                    regulariser.step()
                total += loss.item()
                self.steps_done += 1
                done += 1
                self._call["step"] = step + 1
                if tick:
                    tick(loss.item())
                stop = bool(after_step(step + 1)) if after_step else False
                if self.on_step:
                    self.on_step()
                batch = None
                if stop:
                    break
        finally:
            self._call = None
            layout.close()
        model.to(home, memory_format=torch.contiguous_format).eval()
        return total / max(done, 1)

    def _mix(self, x: torch.Tensor, labels: torch.Tensor):
        """Mixup within the batch: more distinct inputs from few images (the teacher labels the same mix)."""
        if self.config.mixup <= 0 or len(x) < 2:
            return x, [(labels, 1.0)]
        lam = float(torch.distributions.Beta(self.config.mixup, self.config.mixup).sample())
        order = torch.randperm(len(x), device=x.device)
        return lam * x + (1 - lam) * x[order], [(labels, lam), (labels[order], 1 - lam)]

    def _loss(self, logits: torch.Tensor, x: torch.Tensor, labels: list[tuple[torch.Tensor, float]]) -> torch.Tensor:
        labelled = bool((labels[0][0] >= 0).all())
        if self.teacher is None:
            if not labelled:
                raise ValueError("unlabeled images need distillation (--distill)")
            return _cross_entropy(logits, labels)
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        loss = distillation_loss(
            logits, teacher_logits, self.config.temperature, self.config.distill_loss, distributed.global_mean
        )
        if self.features is not None and self.config.feature_weight > 0:
            loss = loss + self.config.feature_weight * self.features.loss()
        if labelled and self.config.label_weight > 0:
            loss = loss + self.config.label_weight * _cross_entropy(logits, labels)
        return loss


def train_with_bar(
    trainer: Trainer, model: nn.Module, steps: int, progress: Progress, label: str, **options: Any
) -> float:
    """`trainer.train` (with `options`) under a progress bar named `label` that shows each step's loss."""
    with progress.task(label, steps) as bar:
        return trainer.train(model, steps, tick=lambda loss: bar.advance(1, f"loss {loss:.3f}"), **options)


def _cross_entropy(logits: torch.Tensor, labels: list[tuple[torch.Tensor, float]]) -> torch.Tensor:
    return sum(weight * F.cross_entropy(logits, target) for target, weight in labels)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer '{cfg.optimizer}'")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: str = "cpu",
    max_batches: int | None = None,
    tick: Callable[[], None] | None = None,
) -> Accuracy:
    """Top-1 / top-5 on labelled images (on `device`; the model goes back where it was)."""
    home = _device_of(model)
    model.to(device).eval()
    counts: ClassCounts | None = None
    with contextlib.ExitStack() as layout:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            if batch.images.numel():
                x = batch.images.to(device)
                if counts is None:  # the first readable batch: the layout is tried on it
                    layout.enter_context(channels_last(x, model))
                logits = model(x)
                counts = counts or ClassCounts.zeros(logits.shape[1])
                top = logits.topk(min(5, logits.shape[1]), dim=1).indices
                counts.add(batch.labels.numpy(), top.cpu().numpy())
            if tick:
                tick()
    model.to(home)
    if counts is not None and distributed.active():  # each rank counted its share of every batch
        counts = ClassCounts(*(distributed.sum_tensor(torch.from_numpy(a)).numpy() for a in counts.arrays()))
    n = int(counts.images.sum()) if counts is not None else 0
    if n == 0 and max_batches is None:
        raise UserError(f"none of the {len(loader.dataset)} evaluation images could be read")
    if counts is None:
        return Accuracy(0.0, 0.0, 0)
    return Accuracy(int(counts.top1.sum()) / max(n, 1), int(counts.top5.sum()) / max(n, 1), n, counts)


def _freeze(model: nn.Module, kind: type[nn.Module]) -> None:
    """Every `kind` module of `model` in eval mode while the rest trains."""
    for m in model.modules():
        if isinstance(m, kind):
            m.eval()


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device
