"""`shrink`: checkpoint in, smaller model out, as a sequence of phases that read top to bottom.

measure before → graph → sparsity training (optional) → allocation (how many per group) → schedule with
criterion (which ones, when) → verify against the prediction → accuracy after pruning → fine-tune →
report. Each phase is a plain function on a `ShrinkRun`, the state they share, so a notebook user can
run them one by one. Phases that cost time go through `run.checkpoint` (checkpoint.py): they save what
they did, and a resumed run restores them instead of running them again.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from ..artifacts.shrink_folder import EXPORTED_ONLY
from ..errors import UserError
from ..models import classifier_module
from ..progress import SILENT, Progress
from ..train import distributed
from ..train.data import DataSplits, ImageSet, calibration_batches, evaluation_set, make_loader, noise_batches
from ..train.held_out import HeldOutCheck
from ..train.loop import Accuracy, Trainer, evaluate
from .allocate import Allocation, AllocationInputs, allocate
from .checkpoint import RunCheckpoint, accuracy_from, accuracy_state, allocation_from, allocation_state
from .config import AUTO, ShrinkConfig
from .cost import COST_MODELS, Cost, CostModel, LayerCosts, count_cost
from .criteria import CalibrationData, Criterion
from .finish import ShrinkResult, finish
from .graph import PruningGraph
from .measured_target import allocate_to_measured_target, recheck_latency, resolve_round_to
from .plan import ChannelPlan
from .recover import fine_tune, prepare_recovery, reconstruct_layers, sparsity_train, statistics_images
from .report import AccuracyReport, layer_shapes
from .schedules import ScheduleContext

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from ..artifacts import LoadedModel


@dataclass
class ShrinkRun:
    """What the phases share; each phase fills in what the later ones read."""

    loaded: LoadedModel
    config: ShrinkConfig
    data: DataSplits | None
    progress: Progress
    example: torch.Tensor
    checkpoint: RunCheckpoint = field(default_factory=RunCheckpoint)
    round: int = 0  # the allocation round under way (1-based)
    eval_set: ImageSet | None = None
    eval_loader: DataLoader | None = None
    started: float = field(default_factory=time.time)
    timings: dict[str, float] = field(default_factory=dict)
    accuracy: AccuracyReport = field(default_factory=AccuracyReport)
    before: Cost | None = None
    output_shape: tuple[int, ...] = ()
    graph: PruningGraph | None = None
    layer_costs: LayerCosts | None = None
    cost: CostModel | None = None
    criterion: Criterion | None = None
    calibration: CalibrationData | None = None
    allocation: Allocation | None = None
    round_target: float = 1.0
    rounds: int = 1  # --rounds, resolved ("auto" depends on the cut and the images)
    teacher: nn.Module | None = None
    trainer: Trainer | None = None
    held_out: HeldOutCheck | None = None  # validation images that judge the fine-tune (train/held_out.py)
    retrain_check: dict[str, Any] = field(default_factory=dict)  # their verdict on it, for the report
    plan: ChannelPlan = field(default_factory=ChannelPlan)
    batches: list[torch.Tensor] = field(default_factory=list)  # calibration inputs
    source: str = ""  # what the calibration inputs are, for the report
    data_free: bool = True
    base_cost: float = 0.0  # the unpruned model in the target's metric
    removed: dict[str, int] = field(default_factory=dict)  # units removed per group, all rounds together
    kept: dict[str, list[int]] = field(default_factory=dict)  # per edited layer: original indices of its outputs
    reconstruction: dict[str, Any] = field(default_factory=dict)
    round_to: int = 8  # --round-to, resolved ("auto" measured on the runtime)
    round_to_note: str = ""
    latency_checks: list[dict] = field(default_factory=list)  # --by latency: measured attempts per round
    latency_final: dict = field(default_factory=dict)  # --by latency: the written model timed once more
    unpruned: nn.Module | None = None  # --by latency: the model before pruning, for that last timing
    schedule_log: list[dict] = field(default_factory=list)
    channels_before: dict[str, int] = field(default_factory=dict)
    layers_before: dict[str, list[int]] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    def evaluate(self, model: nn.Module, label: str) -> Accuracy | None:
        """Top-1/top-5 on the evaluation images (None without them), logged."""
        if self.eval_loader is None:
            return None
        with self.progress.task(label, len(self.eval_loader)) as bar:
            acc = evaluate(model, self.eval_loader, self.config.device, tick=bar.advance)
        self.progress.log(f"{label}: top-1 {acc.top1:.4f}, top-5 {acc.top5:.4f} ({acc.images} images)")
        return acc


def shrink(
    loaded: LoadedModel,
    config: ShrinkConfig,
    data: DataSplits | None = None,
    eval_data: ImageSet | None = None,
    progress: Progress = SILENT,
    checkpoint: RunCheckpoint | None = None,
) -> ShrinkResult:
    """Prune `loaded.model` in place to `config.target` and, with data, win accuracy back; `checkpoint`: where
    to save progress, or a loaded checkpoint to resume (see checkpoint.py)."""
    config.validate()
    run = start(loaded, config, data, eval_data, progress, checkpoint)
    measure_before(run)
    build_graph(run)
    sparsity_train(run)
    prepare_recovery(run)
    calibrate(run)
    for target in round_targets(run):  # one round unless --rounds: allocate, prune, reconstruct, repeat
        allocate_channels(run, target)
        prune(run)
        reconstruct_layers(run)
    verify(run)
    measure_after_pruning(run)
    fine_tune(run)
    recheck_latency(run)
    return finish(run)


def start(
    loaded: LoadedModel,
    config: ShrinkConfig,
    data: DataSplits | None,
    eval_data: ImageSet | None,
    progress: Progress,
    checkpoint: RunCheckpoint | None = None,
) -> ShrinkRun:
    """Check the inputs against each other, seed, and pick the images accuracy is measured on."""
    if loaded.weights == EXPORTED_ONLY:
        raise UserError(
            f"'{loaded.source}' was made from a pickled module and holds only its exported graph, which cannot be "
            "pruned again: shrink the original module (with --trust-pickle) to the lower target instead"
        )
    if config.distill and data is None:
        raise UserError("--distill needs images: pass --data DIR (labels are not needed)")
    if data is not None and not data.train.labeled and not config.distill:
        raise UserError(f"'{data.root}' has no class folders, so no labels: add --distill to learn from them")
    if (
        data is not None
        and data.train.labeled
        and not config.distill
        and len(data.train.classes) > loaded.spec.num_classes
    ):
        raise UserError(
            f"'{data.root}' has {len(data.train.classes)} classes, the model predicts {loaded.spec.num_classes}: "
            "pass --num-classes with the number of classes it was trained on, or --distill to ignore the labels"
        )
    torch.manual_seed(config.seed)
    size = loaded.spec.input_size
    run = ShrinkRun(loaded, config, data, progress, torch.randn(1, 3, size, size), checkpoint or RunCheckpoint())
    run.checkpoint.begin(
        {
            "input_size": size,  # --resolution changes it (and the target); older checkpoints: as this run's
            "config": config.to_json(),
            "source_sha256": loaded.sha256,
            "data": str(data.root) if data is not None else None,
            "eval_images": len(eval_data) if eval_data is not None else None,
        },
        defaults={"config": ShrinkConfig(target=config.target).to_json(), "input_size": size},
    )
    run.eval_set, run.accuracy.note = evaluation_set(loaded.spec.num_classes, data, eval_data)
    if run.accuracy.note:
        progress.log(f"[yellow]{run.accuracy.note}[/yellow]")
    if run.eval_set is not None:
        run.eval_loader = make_loader(
            run.eval_set,
            config.batch_size,
            False,
            workers=config.workers,
            rank=distributed.rank(),
            world=distributed.world(),
        )
        run.accuracy.eval_images = f"{len(run.eval_set)} images"
    run.criterion = config.make_criterion()
    run.plan = ChannelPlan(list(loaded.plan.steps))
    return run


def measure_before(run: ShrinkRun) -> None:
    run.model.eval()
    run.before = count_cost(run.model, run.example)
    run.output_shape = tuple(run.model(run.example).shape)
    saved = run.checkpoint.restored(run, "before")
    if saved is not None:
        run.accuracy.before = accuracy_from(saved["accuracy"])
        return
    run.accuracy.before = run.evaluate(run.model, "accuracy before")
    run.checkpoint.complete(run, "before", {"accuracy": accuracy_state(run.accuracy.before)})


def build_graph(run: ShrinkRun) -> None:
    """Dependency groups and cost models of the model as it is now (each round rebuilds them)."""
    t = time.time()
    classifier = classifier_module(run.model, run.loaded.spec)
    run.graph = PruningGraph(run.model, run.example, [classifier] if classifier is not None else [])
    if not run.graph.groups:
        raise UserError(f"{run.loaded.spec.arch}: no prunable channel groups found (every group reaches the output)")
    run.layer_costs = LayerCosts(run.model, run.example, run.graph.groups)
    if run.cost is not None and hasattr(run.cost, "for_pruned"):  # a later round: keep what was timed
        run.cost = run.cost.for_pruned(run.model, run.example, run.graph.groups)
    else:
        offered = {"model": run.model, "example": run.example, "groups": run.graph.groups, "progress": run.progress}
        run.cost = COST_MODELS.create(run.config.by, offered=offered, **run.config.cost_options)
    run.round_to = resolve_round_to(run)
    if not run.channels_before:  # the unpruned model's, for the report
        run.channels_before = {g.name: run.graph.channels(g.name) for g in run.graph.groups}
        run.layers_before = layer_shapes(run.model)
        run.base_cost = run.cost.baseline()
        if getattr(run.cost, "verified", False):
            run.unpruned = copy.deepcopy(run.model).eval()
    run.timings["graph_s"] = run.timings.get("graph_s", 0.0) + time.time() - t


def calibrate(run: ShrinkRun) -> None:
    """The images criteria and sensitivity look at (random noise without data), with the model's predictions."""
    config = run.config
    if run.data is not None:
        run.source, run.data_free = f"{config.calibration_images} images from {run.data.root}", False
        run.batches = calibration_batches(
            run.data.calibration_set(), config.calibration_images, config.batch_size, config.seed
        )
    else:
        run.source, run.data_free = f"{config.calibration_images} random-noise inputs", True
        size = run.loaded.spec.input_size
        run.batches = noise_batches(config.calibration_images, size, config.batch_size, config.seed)
    run.calibration = CalibrationData.from_model(run.model, run.batches)
    run.calibration.fitting = statistics_images(run) if run.criterion.needs_fitting_images else []
    if run.criterion.needs_data:
        run.progress.log(
            f"criterion {run.criterion.name} ranks channels on {'data-free proxy: ' * run.data_free}{run.source}"
        )


def round_targets(run: ShrinkRun) -> Iterator[float]:
    """Each round's target as a fraction of the *current* cost: rounds cut equal shares of the original."""
    rounds = run.rounds = run.config.rounds_for(has_data=not run.data_free)
    if rounds > 1 and run.config.rounds == AUTO:
        run.progress.log(f"allocating in {rounds} rounds, re-measuring in between (--rounds auto; --rounds 1: one)")
    start = time.time()
    for r in range(1, rounds + 1):
        run.round = r
        if r > 1:
            build_graph(run)  # the pruned model has new shapes: new groups and costs
            pace = (time.time() - start) / (r - 1)
            run.progress.log(
                f"round {r} of {rounds}: re-measuring on the model pruned so far "
                f"({_duration(pace)} a round so far; about {_duration(pace * (rounds - r + 1))} to go at that pace)"
            )
        overall = 1 - (1 - run.config.target) * r / rounds
        yield min(1.0, overall * run.base_cost / run.cost.baseline())


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def allocate_channels(run: ShrinkRun, target: float) -> None:
    """How many units each group loses to reach `target` (a fraction of the current cost)."""
    config, t, key = run.config, time.time(), f"allocate/{run.round}"
    run.round_target = target
    saved = run.checkpoint.restored(run, key)
    if saved is not None:
        run.allocation = allocation_from(saved["allocation"])
        run.latency_checks += saved["latency_checks"]
        return
    measured_before = len(run.latency_checks)
    run.criterion.prepare(run.model, run.calibration)
    schedule = config.make_schedule()
    if schedule.decides_amounts:  # greedy measures where to cut at every step
        run.allocation = Allocation({}, run.cost.baseline(), 1.0, f"{schedule.name} (measured at every step)")
    else:
        strategy = config.make_allocation(has_data=not run.data_free)
        if config.allocation == AUTO and run.data_free:
            run.progress.log("no --data: allocating by weight magnitude (sensitivity measured on noise misleads)")
        inputs = AllocationInputs(
            run.model,
            run.graph,
            run.criterion,
            run.batches,
            run.source,
            run.data_free,
            run.progress,
            resume=run.checkpoint.partial(key),
            save_partial=lambda value: run.checkpoint.save_partial(run, key, value),
            statistics_images=statistics_images(run),
        )
        strategy.prepare(inputs)
        if getattr(run.cost, "verified", False):  # a measured cost: time the allocation, correct, repeat
            # the rounds before the last are steps towards it: predicted, and only the last one timed
            timed = run.round == run.rounds
            run.allocation, entry = allocate_to_measured_target(run, strategy, target, timed)
            run.latency_checks.append(entry)
        else:
            run.allocation = allocate(run.graph.groups, run.cost, strategy, target, run.round_to)
    run.allocation = distributed.broadcast(run.allocation)  # measured (latency) allocations differ per rank
    checks = run.latency_checks[measured_before:]
    run.timings["allocation_s"] = run.timings.get("allocation_s", 0.0) + time.time() - t
    run.checkpoint.complete(run, key, {"allocation": allocation_state(run.allocation), "latency_checks": checks})


def prune(run: ShrinkRun) -> None:
    """Remove the channels (retraining between layers when the schedule does), recording the plan."""
    config, t, key = run.config, time.time(), f"prune/{run.round}"
    schedule = config.make_schedule()
    saved = run.checkpoint.restored(run, key)
    if saved is not None:  # done before the run was killed: the same steps again, through this round's graph
        run.checkpoint.replay_steps(run, upto=saved["steps"])
        log, run.allocation = saved["log"], allocation_from(saved["allocation"])
    else:
        ctx = ScheduleContext(
            run.model,
            run.graph,
            dict(run.allocation.removed),
            run.criterion,
            run.plan,
            calibration=run.calibration,
            trainer=run.trainer,
            steps_per_layer=config.steps_per_layer,
            quick_top1=_quick_top1(run),
            progress=run.progress,
            cost=run.cost,
            target=run.round_target,
            round_to=run.round_to,
            resume=run.checkpoint.partial(key),
            save_partial=lambda value: run.checkpoint.save_partial(run, key, value),
        )
        log = schedule.run(ctx)
        if schedule.decides_amounts:
            predicted = run.cost.predict(ctx.removals)
            run.allocation = Allocation(
                dict(ctx.removals), predicted, predicted / run.cost.baseline(), run.allocation.strategy
            )
    distributed.check_agree(f"the channel plan of round {run.round}", run.plan.to_json())
    run.schedule_log += log
    for name, units in run.allocation.removed.items():
        run.removed[name] = run.removed.get(name, 0) + units
    for layer in _edited_layers(run.graph):
        kept, before = run.graph.kept_outputs(layer), run.kept.get(layer)
        run.kept[layer] = kept if before is None else [before[i] for i in kept]
    run.timings["prune_s"] = run.timings.get("prune_s", 0.0) + time.time() - t
    if saved is None:
        result = {"steps": len(run.plan.steps), "log": log, "allocation": allocation_state(run.allocation)}
        run.checkpoint.complete(run, key, result)


def verify(run: ShrinkRun) -> None:
    """The really pruned model must match the prediction and keep its output shape."""
    after = count_cost(run.model, run.example)
    predicted = run.layer_costs.predict(run.allocation.removed)
    if after != predicted:
        run.progress.log(f"[yellow]note: predicted {predicted}, counted {after}[/yellow]")
    shape = tuple(run.model(run.example).shape)
    if shape != run.output_shape:
        raise RuntimeError(f"pruning changed the output shape {run.output_shape} → {shape}")


def measure_after_pruning(run: ShrinkRun) -> None:
    """One-shot accuracy: pruned (and reconstructed), before any retraining."""
    if run.eval_loader is None:
        return
    saved = run.checkpoint.restored(run, "after_pruning")
    if saved is not None:
        run.accuracy.after_pruning = accuracy_from(saved["accuracy"])
        return
    if run.trainer is None or not run.trainer.steps_done:  # nothing retrained yet: this is the one-shot model
        pruned_only = run.model
    else:  # the schedule retrained between prunes: the plan applied to the original weights shows the damage
        new_steps = ChannelPlan(run.plan.steps[len(run.loaded.plan.steps) :])
        teacher = copy.deepcopy(run.teacher).cpu()
        pruned_only = new_steps.replay(teacher, run.example, [classifier_module(teacher, run.loaded.spec)])
    run.accuracy.after_pruning = run.evaluate(pruned_only, "accuracy after pruning")
    run.checkpoint.complete(run, "after_pruning", {"accuracy": accuracy_state(run.accuracy.after_pruning)})


def _quick_top1(run: ShrinkRun):
    if run.eval_loader is None or not run.config.eval_batches:
        return None
    return lambda model: evaluate(model, run.eval_loader, run.config.device, run.config.eval_batches).top1


def _edited_layers(graph: PruningGraph) -> list[str]:
    return [name for name, _ in graph.model.named_modules() if graph.kept_outputs(name) is not None]
