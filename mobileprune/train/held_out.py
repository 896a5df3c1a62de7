"""Did retraining help? Judged on the user's validation images, which no phase trains or fits on.

A few hundred photos are soon memorised: the distillation loss on the training images keeps falling while
the student drifts from the unpruned model on photos it has not seen. So shrink scores the model before and
after its final fine-tune on the validation split (`--data`'s val/ or test/ folder, else the 10% of its
images it holds out; never `--eval-data`, which only reports) and keeps the better one.

The score is a loss, not a count of right answers: on a hundred images a top-1 count moves by whole
images, a loss moves with what retraining did to every one of them. Cross-entropy to the labels when the
run trains on labels or only the validation images have labels (`judge_by_labels`), else (distillation)
the KL divergence from the unpruned model's outputs, the target distillation trains towards. A user who
labels only a few validation photos gets them judged by what the app cares about, the labels; neither loss
is top-1, and on a few hundred photos either can fall while top-1 falls (docs/accuracy-at-2x.md). Each
image is scored with its mirror image as well (the networks we prune were trained with flips), doubling
the samples for free.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..channels_last import channels_last
from ..errors import UserError
from . import distributed
from .data import DataSplits, ImageSet, seeded_sample

MAX_IMAGES = 256  # enough to rank two models; more only costs time on every score


@dataclass(frozen=True)
class HeldOutScore:
    loss: float  # cross-entropy to the labels, or KL(unpruned ‖ model); lower is better
    top1: float  # share of images whose top-1 is the label, or the unpruned model's top-1

    def to_json(self) -> dict[str, float]:
        return {"loss": round(self.loss, 5), "top1": round(self.top1, 4)}

    @classmethod
    def from_json(cls, data: dict[str, float]) -> HeldOutScore:
        return cls(data["loss"], data["top1"])


@dataclass(frozen=True)
class Verdict:
    """Before and after a fine-tune on the same held-out images, and which model to keep."""

    measure: str  # what the scores are (HeldOutCheck.describe)
    before: HeldOutScore
    after: HeldOutScore  # the best the fine-tune reached (at `epoch`)
    kept: bool  # the fine-tuned model at `epoch` (a loss no higher than before), else the one from before it
    epoch: float  # the epoch whose weights `after` scores
    history: tuple[tuple[float, float], ...]  # (epoch, loss) at the end of every epoch, and of the last step
    seconds: float = 0.0  # spent scoring (inside the fine-tune's wall time)
    stopped_at: float | None = None  # the epoch after which `patience` epochs without a better score stopped it
    best_at: float = 0.0  # the epoch of the best weights (0: those from before the fine-tune)

    @property
    def last_epoch(self) -> float:
        return self.history[-1][0] if self.history else self.epoch

    def to_json(self) -> dict:
        return {
            "measure": self.measure,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "epoch": self.epoch,
            "kept": "retrained" if self.kept else "before retraining",
            "history": [{"epoch": e, "loss": round(loss, 5)} for e, loss in self.history],
            "seconds": round(self.seconds, 1),
            **({"stopped_early_at": self.stopped_at} if self.stopped_at is not None else {}),
        }

    def message(self) -> str:
        change = f"{self.before.loss:.4f} → {self.after.loss:.4f}"
        if self.stopped_at is not None:
            change += f"; stopped after epoch {self.stopped_at:g}, no better score since epoch {self.best_at:g}"
        if self.kept:
            when = "" if self.epoch == self.last_epoch else f" (epoch {self.epoch:g} of {self.last_epoch:g}: the best)"
            return f"retraining kept{when}: {self.measure} {change}"
        return (
            f"[yellow]retraining discarded: at its best it raised the {self.measure} ({change}); "
            "the model is the one from before retraining[/yellow]"
        )


def judge_by_labels(data: DataSplits, distill: bool) -> bool:
    """Whether labels judge the fine-tune (when the validation images have them): yes when the run trains on
    labels, and when only the validation images are labelled (a user who labels a few photos to judge
    with); a distillation on labelled images is judged by what it trains towards, the unpruned model."""
    return not distill or not data.train.labeled


class HeldOutCheck:
    """The validation images (and their mirror images) with their targets, fixed once; any model scored on them."""

    def __init__(
        self,
        images: ImageSet,
        reference: nn.Module,
        use_labels: bool,
        device: str = "cpu",
        batch_size: int = 32,
        seed: int = 0,
        max_images: int = MAX_IMAGES,
    ):
        self.device = device
        self.labelled = use_labels and images.labeled
        sample = seeded_sample(images, max_images, seed)
        xs, labels = [x for x, _ in sample], [label for _, label in sample]
        self.photos = len(xs)
        self.batches = [torch.stack(xs[i : i + batch_size]) for i in range(0, len(xs), batch_size)]
        self.batches += [b.flip(-1) for b in self.batches]
        if self.labelled:
            self.targets = [torch.tensor(labels[i : i + batch_size]) for i in range(0, len(labels), batch_size)] * 2
        else:
            self.targets = self._logits(reference)

    @classmethod
    def for_fine_tune(
        cls, data: DataSplits, reference: nn.Module, distill: bool, device: str, batch_size: int, seed: int
    ) -> HeldOutCheck:
        """The check of a fine-tune on `data`: its validation images, judged by labels or the KL as
        `judge_by_labels` decides."""
        return cls(data.val, reference, judge_by_labels(data, distill), device, batch_size, seed)

    @property
    def images(self) -> int:
        return sum(len(b) for b in self.batches)

    def describe(self) -> str:
        what = "cross-entropy to the labels" if self.labelled else "KL divergence from the unpruned model"
        return f"{what} on {self.photos} held-out images and their mirror images"

    def score(self, model: nn.Module) -> HeldOutScore:
        logits = self._logits(model)
        loss, right, n = 0.0, 0, 0
        for out, target in zip(logits, self.targets, strict=True):
            if self.labelled:
                loss += float(F.cross_entropy(out, target, reduction="sum"))
                right += int((out.argmax(1) == target).sum())
            else:
                log_p, log_q = F.log_softmax(target, 1), F.log_softmax(out, 1)
                loss += float(F.kl_div(log_q, log_p, log_target=True, reduction="sum"))
                right += int((out.argmax(1) == target.argmax(1)).sum())
            n += len(out)
        return HeldOutScore(loss / max(n, 1), right / max(n, 1))

    @torch.no_grad()
    def _logits(self, model: nn.Module) -> list[torch.Tensor]:
        home = next(model.parameters(), torch.empty(0)).device
        training = {m: m.training for m in model.modules()}  # per module: a trainer's frozen batch norm stays so
        model.to(self.device).eval()
        try:
            if not self.batches:
                return []
            with channels_last(self.batches[0].to(self.device), model):
                return [model(b.to(self.device)).float().cpu() for b in self.batches]
        finally:
            model.to(home)
            for m, mode in training.items():
                m.training = mode


def check_patience(patience: int, retrain_check: bool) -> None:
    """`--patience` is a whole number of epochs, and it stops on the check's scores, so it needs the check."""
    if patience < 0:
        raise UserError(f"--patience must be 0 (off) or a number of epochs, not {patience}")
    if patience and not retrain_check:
        raise UserError("--patience stops on the validation images' scores: it needs --retrain-check")


class BestEpoch:
    """The best weights a fine-tune passes through: scored before it and at the end of every epoch.

    `observe` after each epoch (`each_epoch` does, during training); `finish` scores the end, puts the best
    weights back and says which they are. Its `state` goes into a resumable run's
    checkpoint, so a resumed fine-tune remembers them. With `patience`, `each_epoch` ends the training once
    that many epochs have brought no better score. Under torchrun every rank scores its own copy of the
    (identical) model, and rank 0's scores decide for all.
    """

    def __init__(self, check: HeldOutCheck, before: HeldOutScore, weights: dict[str, torch.Tensor], patience: int = 0):
        self.check = check
        self.patience = patience  # stop after this many epochs without a better score (0: never)
        self.before = before
        self.weights = weights  # the best so far (the starting weights until an epoch beats them)
        self.after: HeldOutScore | None = None  # the best epoch's score, kept or not
        self.epoch = 0.0
        self.history: list[tuple[float, float]] = []
        self.seconds = 0.0
        self.best_at = 0.0  # the epoch `weights` are from (0: before the fine-tune)
        self.stopped_at: float | None = None

    @classmethod
    def start(cls, check: HeldOutCheck, model: nn.Module, patience: int = 0) -> BestEpoch:
        t = time.time()
        best = cls(check, distributed.broadcast(check.score(model)), _copy_weights(model), patience)
        best.seconds = time.time() - t
        return best

    def observe(self, model: nn.Module, epoch: float) -> None:
        t = time.time()
        score = distributed.broadcast(self.check.score(model))
        self.seconds += time.time() - t
        self.history.append((round(epoch, 3), score.loss))
        if self.after is not None and score.loss >= self.after.loss:
            return
        self.after, self.epoch = score, round(epoch, 3)
        if score.loss <= self.before.loss:
            self.weights, self.best_at = _copy_weights(model), self.epoch

    def each_epoch(
        self, model: nn.Module, steps: int, per_epoch: int, then: Callable[[], None] | None = None
    ) -> Callable[[int], bool]:
        """An `after_step` for Trainer.train: observe `model` after every `per_epoch` steps before the last
        of `steps` (the caller observes the end), then call `then` (a checkpoint holding the new state, say).
        It returns True, stopping the training, once `patience` epochs have passed without a better score."""

        def after_step(done: int) -> bool:
            if done % max(per_epoch, 1) or done >= steps:
                return False
            epoch = done / max(per_epoch, 1)
            self.observe(model, epoch)
            if self.patience and epoch - self.best_at >= self.patience:
                self.stopped_at = round(epoch, 3)
            if then is not None:
                then()
            return self.stopped_at is not None

        return after_step

    @property
    def kept(self) -> bool:
        return self.after is not None and self.after.loss <= self.before.loss

    def verdict(self) -> Verdict:
        after = self.after if self.after is not None else self.before
        history = tuple(self.history)
        return Verdict(
            self.check.describe(),
            self.before,
            after,
            self.kept,
            self.epoch,
            history,
            self.seconds,
            self.stopped_at,
            self.best_at,
        )

    def finish(self, model: nn.Module, epoch: float) -> Verdict:
        """At the end of the fine-tune (`epoch`; already scored when `patience` stopped it): the verdict,
        with the best weights put back into `model` (a no-op when it ended on them)."""
        if self.stopped_at is None:
            self.observe(model, epoch)
        if not (self.kept and self.epoch == self.history[-1][0]):
            model.load_state_dict(self.weights)
        return self.verdict()

    def state(self) -> dict[str, Any]:
        """Plain containers for a checkpoint; scores unrounded, so a resumed run decides as this one would."""
        return {
            "weights": self.weights,
            "score": dataclasses.asdict(self.before),
            "after": dataclasses.asdict(self.after) if self.after is not None else None,
            "epoch": self.epoch,
            "history": [list(h) for h in self.history],
            "seconds": self.seconds,
            "best_at": self.best_at,
            "stopped_at": self.stopped_at,
        }

    @classmethod
    def from_state(cls, check: HeldOutCheck, state: dict[str, Any], patience: int = 0) -> BestEpoch:
        """Back from `state` (a checkpoint from before per-epoch scoring has only the weights and score)."""
        best = cls(check, HeldOutScore.from_json(state["score"]), state["weights"], patience)
        best.after = HeldOutScore.from_json(state["after"]) if state.get("after") else None
        best.epoch = state.get("epoch", 0.0)
        best.history = [(e, loss) for e, loss in state.get("history", [])]
        best.seconds = state.get("seconds", 0.0)
        best.best_at, best.stopped_at = state.get("best_at", 0.0), state.get("stopped_at")
        return best


def _copy_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights (training changes the model's own in place)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
