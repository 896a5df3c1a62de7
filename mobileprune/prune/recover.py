"""Winning accuracy back, as phases of `shrink`: sparsity training before pruning, then reconstruction
(least-squares re-fit of every dense layer to the unpruned outputs) and fine-tuning (labels or distillation)
after it. Each phase does nothing without images.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING

import torch

from ..errors import UserError
from ..train import distributed
from ..train.data import ImageSet, calibration_batches, make_loader, train_transform
from ..train.features import FeatureMatch
from ..train.held_out import BestEpoch, HeldOutCheck
from ..train.loop import Trainer, train_with_bar
from .checkpoint import accuracy_from, accuracy_state, cpu_weights
from .compensation import held_apart
from .reconstruct import reconstruct, refittable_layers

if TYPE_CHECKING:
    from .pipeline import ShrinkRun


def sparsity_train(run: ShrinkRun) -> None:
    """Drive useless channels' scale factors (BN γ, or SSS gates) to zero, when asked."""
    config = run.config
    if config.sparsity_train <= 0:
        return
    if run.data is None:
        raise UserError("--sparsity-train needs images to train on: pass --data DIR")
    saved = run.checkpoint.restored(run, "sparsity_train")
    if saved is not None:  # the teacher and calibration of later phases are the sparsity-trained model
        run.model.load_state_dict(saved["weights"])
        run.accuracy.after_sparsity_training = accuracy_from(saved["accuracy"])
        return
    t = time.time()
    loader = _loader(run, run.data.train)
    teacher = copy.deepcopy(run.model).eval() if config.distill else None
    regulariser = run.criterion.sparsity_regulariser(run.model.to(config.device), run.graph, config.l1_gamma)
    trainer = Trainer(loader, config.train, teacher, config.device)
    steps = max(1, round(config.sparsity_train * len(loader)))
    label = f"sparsity training ({regulariser.description})"
    train_with_bar(trainer, run.model, steps, run.progress, label, regulariser=regulariser)
    regulariser.finish()
    run.timings["sparsity_train_s"] = time.time() - t
    run.accuracy.after_sparsity_training = run.evaluate(run.model, "accuracy after sparsity training")
    result = {"weights": cpu_weights(run.model), "accuracy": accuracy_state(run.accuracy.after_sparsity_training)}
    run.checkpoint.complete(run, "sparsity_train", result)


def prepare_recovery(run: ShrinkRun) -> None:
    """The unpruned model as teacher and reconstruction target, and the retraining loop, when there are images."""
    config = run.config
    if config.distill or run.data is not None:
        run.teacher = copy.deepcopy(run.model).eval()
    if run.data is not None:
        data = run.data
        augmented = data.train.with_transform(train_transform(data.size, data.mean, data.std, config.train.crop_scale))
        run.trainer = Trainer(
            _loader(run, augmented), config.train, run.teacher if config.distill else None, config.device
        )
        run.trainer.on_step = lambda: run.checkpoint.step(run)
        if config.retrain_check and config.epochs > 0 and data.val is not None and len(data.val):
            run.held_out = HeldOutCheck.for_fine_tune(
                data, run.teacher, config.distill, config.device, config.batch_size, config.seed
            )


def _loader(run: ShrinkRun, images):
    """Training batches, this process's share of each under torchrun (see train/sampling.py)."""
    config = run.config
    return make_loader(
        images,
        config.batch_size,
        True,
        config.seed,
        config.workers,
        distributed.rank(),
        distributed.world(),
        pin_memory=config.device.startswith("cuda"),
    )


def reconstruction_batches(run: ShrinkRun) -> list[torch.Tensor] | None:
    """The images reconstruction re-fits on after each prune; None when no reconstruction will run.

    With a few hundred photos, the widest layers (the last stage, at 7×7) have more inputs than independent
    samples, and their least-squares fits memorise the photos; mirror images double the samples without
    leaving the user's domain (the networks we prune were trained with flips).
    """
    config = run.config
    if not config.reconstruct or run.data is None or run.teacher is None:
        return None
    return fitting_batches(
        run.data.calibration_set(), config.reconstruct_images, config.batch_size, config.seed, config.reconstruct_mirror
    )


def fitting_batches(images: ImageSet, count: int, batch_size: int, seed: int, mirror: bool) -> list[torch.Tensor]:
    """`count` seeded images (eval transform) in batches, followed by their mirror images when `mirror`."""
    batches = calibration_batches(images, count, batch_size, seed)
    return batches + [b.flip(-1) for b in batches] if mirror else batches


def statistics_images(run: ShrinkRun) -> list[torch.Tensor]:
    """What layer-input statistics are measured on: the reconstruction images without the calibration images
    (compensation.held_apart: a probe graded on its own images flatters itself); none without reconstruction."""
    fitting = reconstruction_batches(run)
    return held_apart(fitting, run.batches) if fitting else []


def reconstruct_layers(run: ShrinkRun) -> None:
    """Re-fit every dense layer to the unpruned model's outputs (see reconstruct.py), when there are images."""
    config = run.config
    if not config.reconstruct or run.data is None or run.teacher is None or not run.allocation.removed:
        return
    key = f"reconstruct/{run.round}"
    saved = run.checkpoint.restored(run, key)
    if saved is not None:
        run.reconstruction = saved
        return
    t = time.time()
    batches = reconstruction_batches(run) or []
    layers = refittable_layers(run.model)
    images = sum(len(b) for b in batches)
    with run.progress.task(f"reconstruction ({len(layers)} layers, {_describe(images, config)})", len(layers)) as bar:
        fits = reconstruct(
            run.model.to(config.device),
            run.teacher.to(config.device),
            layers,
            [b.to(config.device) for b in batches],
            run.kept.get,
            progress=bar.advance,
        )
    run.model.cpu()  # pruning and checks work on the CPU; only fitting and training use --device
    run.reconstruction = {
        "layers": len(fits),
        "images": images,
        "mirrored": config.reconstruct_mirror,
        "mean_error_before": round(sum(f.error_before for f in fits) / max(len(fits), 1), 5),
        "mean_error_after": round(sum(f.error_after for f in fits) / max(len(fits), 1), 5),
        "per_layer": [f.to_json() for f in fits],
    }
    run.progress.log(
        f"reconstruction: {len(fits)} layers re-fitted on {_describe(images, config)}, mean relative "
        f"output error {run.reconstruction['mean_error_before']:.4f} → {run.reconstruction['mean_error_after']:.4f}"
    )
    run.timings["reconstruct_s"] = run.timings.get("reconstruct_s", 0.0) + time.time() - t
    run.checkpoint.complete(run, key, run.reconstruction)


def _describe(images: int, config) -> str:
    return f"{images // 2} images and their mirror images" if config.reconstruct_mirror else f"{images} images"


def fine_tune(run: ShrinkRun) -> None:
    """`--epochs` of retraining on the whole pruned model, cosine learning rate; its best epoch kept if it helped.

    Helped means a lower loss on the validation images (see train/held_out.py), scored after every epoch;
    the weights of the best epoch are kept, or those from before retraining when no epoch beat them, and
    the report says which. With `--patience N` the fine-tune stops after N epochs without a better score.
    """
    if run.trainer is None:
        return
    saved = run.checkpoint.restored(run, "fine_tune")
    if saved is not None:
        run.accuracy.after_retraining = accuracy_from(saved["accuracy"])
        run.retrain_check = saved.get("check", {})
        return
    config, t = run.config, time.time()
    steps = round(config.epochs * len(run.trainer.loader))
    best = _start_of_retraining(run) if steps and run.held_out is not None else None
    if steps and run.trainer.teacher is not None and config.train.feature_weight > 0:
        layers = refittable_layers(run.model)
        run.trainer.features = FeatureMatch(run.model, run.trainer.teacher, layers, run.kept.get)
    if steps and (best is None or best.stopped_at is None):  # (a run resumed after an early stop trains no more)
        after_step = None
        if best is not None:  # scored after every epoch; the checkpoint writes the best so far with its next save

            def hold() -> None:
                run.checkpoint.hold_partial("fine_tune", best.state())

            after_step = best.each_epoch(run.model, steps, len(run.trainer.loader), then=hold)
        label = f"fine-tune {config.epochs:g} epochs"
        train_with_bar(run.trainer, run.model, steps, run.progress, label, cosine=True, after_step=after_step)
    if run.trainer.features is not None:
        run.trainer.features.remove()
        run.trainer.features = None
    kept = _keep_the_best(run, best, steps / len(run.trainer.loader)) if best is not None else True
    while_pruning = run.timings["prune_s"] if config.make_schedule().retrains_while_pruning else 0
    run.timings["retrain_s"] = run.timings.get("retrain_s", 0.0) + time.time() - t + while_pruning
    if run.trainer.steps_done and kept:
        run.accuracy.after_retraining = run.evaluate(run.model, "accuracy after retraining")
    result = {"accuracy": accuracy_state(run.accuracy.after_retraining), "check": run.retrain_check}
    run.checkpoint.complete(run, "fine_tune", result)


def _start_of_retraining(run: ShrinkRun) -> BestEpoch:
    """The weights and validation score before the fine-tune (or, resuming, the best so far, from the checkpoint)."""
    saved, patience = run.checkpoint.partial("fine_tune"), run.config.patience
    if saved is not None:
        return BestEpoch.from_state(run.held_out, saved, patience)
    best = BestEpoch.start(run.held_out, run.model, patience)
    run.checkpoint.save_partial(run, "fine_tune", best.state())
    return best


def _keep_the_best(run: ShrinkRun, best: BestEpoch, epochs: float) -> bool:
    """Score the end of the fine-tune and put back the best weights the validation images saw (the
    fine-tune's best epoch, or those from before it)."""
    verdict = best.finish(run.model, epochs)
    run.retrain_check = verdict.to_json()
    run.progress.log(verdict.message())
    return verdict.kept
