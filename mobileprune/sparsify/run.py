"""`sparsify`: zero individual weights to a sparsity, keep them zero through fine-tuning, report per layer.

start (checks, masks the input already had, trainer and evaluation images) → accuracy before → the method
(magnitude, gradual, lottery, obs, hybrid: methods/) → accuracy after → report. The result is a
`ShrinkResult` whose model carries its masks, so the shrink output folder, `info`, `convert`, `bench` and
`sweep` read a sparse model like a shrunk one; a hybrid's structured step is in its plan.

Each step is a phase of shrink's `RunCheckpoint` (prune/checkpoint.py): with a checkpoint folder a killed
run goes on with `--resume`. A phase's masks travel in its result, or, while a method trains, in its
partial state beside the weights and trainer of the same step.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from ..artifacts.shrink_folder import EXPORTED_ONLY
from ..errors import UserError
from ..models import build_model
from ..progress import SILENT, Progress
from ..prune.checkpoint import RunCheckpoint, accuracy_from, accuracy_state
from ..prune.cost import Cost, count_cost
from ..prune.plan import ChannelPlan
from ..prune.report import AccuracyReport
from ..train.data import DataSplits, ImageSet, calibration_batches, evaluation_set, make_loader, train_transform
from ..train.held_out import BestEpoch, HeldOutCheck
from ..train.loop import Accuracy, Trainer, evaluate, train_with_bar
from .config import SparsifyConfig
from .finish import finish_sparsify
from .masks import MaskHold, WeightMasks, held, prunable_weights, sparse_layers

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from ..artifacts import LoadedModel
    from ..prune.finish import ShrinkResult


@dataclass
class SparsifyRun:
    """What the method works on; it leaves the sparse model in `loaded.model` and its masks in `masks`."""

    loaded: LoadedModel
    config: SparsifyConfig
    data: DataSplits | None
    progress: Progress
    example: torch.Tensor
    sparsity: float  # what the method must reach in the model's sparsifiable layers (hybrid lowers it)
    masks: WeightMasks = field(default_factory=WeightMasks)
    plan: ChannelPlan = field(default_factory=ChannelPlan)
    trainer: Trainer | None = None
    eval_loader: DataLoader | None = None
    accuracy: AccuracyReport = field(default_factory=AccuracyReport)
    budget: int = 0  # fine-tune steps (--epochs over --data)
    held_out: HeldOutCheck | None = None  # validation images that judge a one-shot method's fine-tune
    check: dict | None = None  # their verdict on the fine-tune, as the report has it (None: not judged)
    check_kept: bool = True  # the verdict kept the fine-tuned weights
    checkpoint: RunCheckpoint = field(default_factory=RunCheckpoint)  # a folder-less one saves nothing
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # the method's own report entries
    started: float = field(default_factory=time.time)
    before: Cost = field(default_factory=lambda: Cost(0, 0))  # the unpruned architecture's
    original_weights: int = 0  # the unpruned architecture's sparsifiable weights

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    @property
    def layers(self) -> dict[str, nn.Module]:
        return sparse_layers(self.model)

    def evaluate(self, label: str) -> Accuracy | None:
        if self.eval_loader is None:
            return None
        with self.progress.task(label, len(self.eval_loader)) as bar:
            acc = evaluate(self.model, self.eval_loader, self.config.device, tick=bar.advance)
        self.progress.log(f"{label}: top-1 {acc.top1:.4f}, top-5 {acc.top5:.4f} ({acc.images} images)")
        return acc

    def phase(self, key: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Phase `key`'s result: saved, when resuming past it; else `work()`'s, then checkpointed."""
        saved = self.checkpoint.restored(self, key)
        if saved is not None:
            return saved
        result = work()
        self.checkpoint.complete(self, key, result)
        return result

    def masking(self, key: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A phase that sets `masks` (its result's "masks") and zeroes what they mask."""
        result = self.phase(key, lambda: {**work(), "masks": self.masks.masks})
        self.masks = WeightMasks(result["masks"])
        return result

    def after_pruning(self) -> None:
        """The one-shot accuracy, for methods that zero everything before training."""

        def measure() -> dict[str, Any]:
            self.timings["prune_s"] = time.time() - self.started
            return {"accuracy": accuracy_state(self.evaluate("accuracy after sparsifying"))}

        self.accuracy.after_pruning = accuracy_from(self.phase("after_pruning", measure)["accuracy"])

    def calibration(self) -> list[torch.Tensor]:
        if self.data is None:
            raise UserError(
                f"--method {self.config.method} needs calibration images: pass --data DIR (unlabeled is fine)"
            )
        config = self.config
        return calibration_batches(
            self.data.calibration_set(), config.calibration_images, config.batch_size, config.seed
        )

    def train(
        self,
        steps: int,
        hold: MaskHold,
        label: str,
        after_step: Callable[[int], bool | None] | None = None,
        partial: tuple[str, Callable[[], dict[str, Any]]] | None = None,
    ) -> None:
        """`steps` fine-tune steps (cosine learning rate) with `hold` keeping the masks.

        `partial` (phase key, state): what the method must have back to go on after a kill inside this
        training, held after every step so the checkpoint writes it with that step's weights.
        """
        if self.trainer is None or steps <= 0:
            return
        t = time.time()

        def each_step(done: int) -> bool | None:
            stop = after_step(done) if after_step is not None else None
            if partial is not None:
                self.checkpoint.hold_partial(partial[0], partial[1]())
            return stop

        options = {"cosine": True, "regulariser": hold, "after_step": each_step}
        train_with_bar(self.trainer, self.model, steps, self.progress, label, **options)
        self.timings["retrain_s"] = self.timings.get("retrain_s", 0.0) + time.time() - t

    def fine_tune(self, steps: int) -> None:
        """The fine-tune after a one-shot method; its best epoch kept if the validation images say it helped.

        Methods that sparsify while training (gradual, lottery) have no finished model before their
        training to fall back on, so only this fine-tune is judged (see train/held_out.py).
        """
        saved = self.checkpoint.restored(self, "fine_tune")
        if saved is None:
            saved = self._fine_tune(steps)
            self.checkpoint.complete(self, "fine_tune", saved)
        self.check, self.check_kept = saved["check"], saved["kept"]

    def _fine_tune(self, steps: int) -> dict[str, Any]:
        check = self.held_out if self.trainer is not None and steps > 0 else None
        best = None
        if check is not None:
            started = self.checkpoint.partial("fine_tune")
            if started is not None:
                best = BestEpoch.from_state(check, started, self.config.patience)
            else:
                best = BestEpoch.start(check, self.model, self.config.patience)
                self.checkpoint.save_partial(self, "fine_tune", best.state())
        with held(self.model, self.masks) as hold:
            after_step = best.each_epoch(self.model, steps, len(self.trainer.loader)) if best is not None else None
            state = (lambda: best.state()) if best is not None else dict
            if best is None or best.stopped_at is None:  # (a run resumed after an early stop trains no more)
                self.train(steps, hold, f"masked fine-tune, {steps} steps", after_step, ("fine_tune", state))
        if best is None:
            return {"check": None, "kept": True}
        verdict = best.finish(self.model, steps / len(self.trainer.loader))
        self.progress.log(verdict.message())
        return {"check": verdict.to_json(), "kept": verdict.kept}

    @property
    def retraining_kept(self) -> bool:
        """Whether the weights are the fine-tuned ones (there was a fine-tune and the check did not undo it)."""
        done = self.trainer is not None and self.trainer.steps_done > 0
        return done and self.check_kept


def sparsify(
    loaded: LoadedModel,
    config: SparsifyConfig,
    data: DataSplits | None = None,
    eval_data: ImageSet | None = None,
    progress: Progress = SILENT,
    checkpoint: RunCheckpoint | None = None,
) -> ShrinkResult:
    """Zero `config.sparsity` of the weights of `loaded.model`'s sparsifiable layers, in place.

    With a `checkpoint` that has a folder (`RunCheckpoint.open`), the run saves as it goes and a killed
    one goes on from it.
    """
    config.validate()
    method = config.make_method()
    run = start(loaded, config, data, eval_data, progress, checkpoint or RunCheckpoint())
    if method.needs_training and run.budget == 0:
        raise UserError(f"--method {method.name} prunes while fine-tuning: pass --data DIR and --epochs N")
    if method.needs_images and data is None:
        raise UserError(f"--method {method.name} needs calibration images: pass --data DIR (unlabeled is fine)")
    before = run.phase("before", lambda: {"accuracy": accuracy_state(run.evaluate("accuracy before"))})
    run.accuracy.before = accuracy_from(before["accuracy"])
    method.run(run)
    run.masks.apply(run.model)
    if run.retraining_kept:
        after = run.phase("after", lambda: {"accuracy": accuracy_state(run.evaluate("accuracy after fine-tuning"))})
        run.accuracy.after_retraining = accuracy_from(after["accuracy"])
    return finish_sparsify(run, method)


def start(
    loaded: LoadedModel,
    config: SparsifyConfig,
    data: DataSplits | None,
    eval_data: ImageSet | None,
    progress: Progress,
    checkpoint: RunCheckpoint,
) -> SparsifyRun:
    if loaded.weights == EXPORTED_ONLY:
        raise UserError(
            f"'{loaded.source}' holds only an exported graph (from a pickled module): it cannot be sparsified"
        )
    if data is not None and not data.train.labeled and not config.distill and config.epochs > 0:
        raise UserError(f"'{data.root}' has no class folders, so no labels: add --distill to learn from them")
    if not sparse_layers(loaded.model):
        raise UserError(f"{loaded.spec.arch} has no conv or linear layer to sparsify")
    torch.manual_seed(config.seed)
    size = loaded.spec.input_size
    masks = WeightMasks(loaded.masks)
    problem = masks.check_fits(loaded.model)
    if problem:
        raise UserError(f"'{loaded.source}': {problem}")
    run = SparsifyRun(loaded, config, data, progress, torch.randn(1, 3, size, size), config.sparsity, masks)
    run.checkpoint = checkpoint
    checkpoint.begin(
        {
            "config": config.to_json(),
            "source_sha256": loaded.sha256,
            "data": str(data.root) if data is not None else None,
            "eval_images": len(eval_data) if eval_data is not None else None,
        },
        defaults={"config": SparsifyConfig(sparsity=config.sparsity).to_json()},
    )
    run.plan = ChannelPlan(list(loaded.plan.steps))
    unpruned = build_model(loaded.spec) if loaded.plan.steps else loaded.model  # a shrink output's original
    run.before, run.original_weights = count_cost(unpruned, run.example), prunable_weights(unpruned)
    eval_set, run.accuracy.note = evaluation_set(loaded.spec.num_classes, data, eval_data)
    if run.accuracy.note:
        progress.log(f"[yellow]{run.accuracy.note}[/yellow]")
    if eval_set is not None:
        run.eval_loader = make_loader(eval_set, config.batch_size, False, workers=config.workers)
        run.accuracy.eval_images = f"{len(eval_set)} images"
    if data is not None:
        augmented = data.train.with_transform(train_transform(data.size, data.mean, data.std, config.train.crop_scale))
        loader = make_loader(augmented, config.batch_size, True, config.seed, config.workers)
        teacher = copy.deepcopy(loaded.model).eval() if config.distill else None
        run.trainer = Trainer(loader, config.train, teacher, config.device)
        run.trainer.on_step = lambda: run.checkpoint.step(run)
        run.budget = round(config.epochs * len(loader))
        if config.retrain_check and run.budget > 0 and data.val is not None and len(data.val):
            reference = teacher if teacher is not None else loaded.model
            run.held_out = HeldOutCheck.for_fine_tune(
                data, reference, config.distill, config.device, config.batch_size, config.seed
            )
    return run
