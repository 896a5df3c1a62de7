"""Did retraining help? Judged on the user's validation images, which no phase trains or fits on.

A few hundred photos are soon memorised: the distillation loss on the training images keeps falling while
the student drifts from the unpruned model on photos it has not seen. So shrink scores the model before and
after its final fine-tune on the validation split (`--data`'s val/ or test/ folder, else the 10% of its
images it holds out; never `--eval-data`, which only reports) and keeps the better one.

The score is a loss, not a count of right answers: on a hundred images a top-1 count moves by whole
images, a loss moves with what retraining did to every one of them. Cross-entropy to the labels when the
run trains on labels, else (distillation) the KL divergence from the unpruned model's outputs, the target
distillation trains towards. Each image is scored with its mirror image as well (the networks we prune
were trained with flips), doubling the samples for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..channels_last import channels_last
from .data import ImageSet, seeded_sample

MAX_IMAGES = 256  # enough to rank two models; more only costs time on every score


@dataclass(frozen=True)
class HeldOutScore:
    loss: float  # cross-entropy to the labels, or KL(unpruned ‖ model); lower is better
    top1: float  # share of images whose top-1 is the label, or the unpruned model's top-1

    def to_json(self) -> dict[str, float]:
        return {"loss": round(self.loss, 5), "top1": round(self.top1, 4)}


@dataclass(frozen=True)
class Verdict:
    """Before and after a fine-tune on the same held-out images, and which model to keep."""

    measure: str  # what the scores are (HeldOutCheck.describe)
    before: HeldOutScore
    after: HeldOutScore
    kept: bool  # the fine-tuned model (a loss no higher than before), else the one from before it

    def to_json(self) -> dict:
        return {
            "measure": self.measure,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "kept": "retrained" if self.kept else "before retraining",
        }

    def message(self) -> str:
        change = f"{self.before.loss:.4f} → {self.after.loss:.4f}"
        if self.kept:
            return f"retraining kept: {self.measure} {change}"
        return (
            f"[yellow]retraining discarded: it raised the {self.measure} ({change}); "
            "the model is the one from before retraining[/yellow]"
        )


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

    def judge(self, before: HeldOutScore, model: nn.Module) -> Verdict:
        """Score the fine-tuned `model` and compare it with its score `before` the fine-tune."""
        after = self.score(model)
        return Verdict(self.describe(), before, after, after.loss <= before.loss)

    @torch.no_grad()
    def _logits(self, model: nn.Module) -> list[torch.Tensor]:
        home = next(model.parameters(), torch.empty(0)).device
        training = model.training
        model.to(self.device).eval()
        try:
            if not self.batches:
                return []
            with channels_last(self.batches[0].to(self.device), model):
                return [model(b.to(self.device)).float().cpu() for b in self.batches]
        finally:
            model.to(home).train(training)
