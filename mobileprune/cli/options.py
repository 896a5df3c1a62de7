"""Options more than one command takes, declared once.

`MODEL_OPTIONS` (how MODEL is read) and `SHRINK_OPTIONS` (how it is pruned and retrained) are added to a
command's signature by `with_options`, which hands the command a built `ShrinkConfig` and the load
arguments, so `shrink` and `sweep` can never drift apart. Choices in the help come from the registries.
"""

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UserError
from ..prune.allocate import ALLOCATIONS
from ..prune.config import ShrinkConfig, parse_target
from ..prune.cost import COST_MODELS
from ..prune.criteria import CRITERIA
from ..prune.schedules import SCHEDULES
from ..train.distill import DISTILL_LOSSES
from ..train.loop import TrainConfig


def _choices(registry) -> str:
    return ", ".join(registry.names())


@dataclass(frozen=True)
class Opt:
    kind: Any
    default: Any
    help: str
    flag: str | None = None  # e.g. "--check/--no-check"


MODEL_OPTIONS: dict[str, Opt] = {
    "arch": Opt(str | None, None, "Architecture of a state-dict checkpoint."),
    "num_classes": Opt(int | None, None, "Classes of a checkpoint's classifier."),
    "input_size": Opt(int | None, None, "Override the preset's input size."),
    "trust_pickle": Opt(bool, False, "Allow loading a pickled nn.Module or a .pt2 with pickles (runs their code)."),
}


def _shrink_options() -> dict[str, Opt]:
    return {
        "by": Opt(str, "params", f"What the target counts: {_choices(COST_MODELS)}."),
        "criterion": Opt(str, "l1", f"Channel ranking: {_choices(CRITERIA)}."),
        "allocation": Opt(
            str, "auto", f"Per-layer amounts: {_choices(ALLOCATIONS)}; auto = sensitivity with --data, else magnitude."
        ),
        "schedule": Opt(str, "oneshot", f"When channels go: {_choices(SCHEDULES)}."),
        "criterion_option": Opt(list[str] | None, None, "KEY=VALUE for the criterion (see `mobileprune plugins`)."),
        "allocation_option": Opt(list[str] | None, None, "KEY=VALUE for the allocation."),
        "schedule_option": Opt(list[str] | None, None, "KEY=VALUE for the schedule."),
        "max_layer_ratio": Opt(float | None, None, "global: most a layer may lose (allocation option max_fraction)."),
        "ucb_pulls": Opt(float | None, None, "ucb: bandit pulls per channel (criterion option pulls_per_channel)."),
        "sparsity_train": Opt(
            float, 0.0, "Epochs of sparsity training first: L1 on BN scales (bn) or channel gates (sss)."
        ),
        "l1_gamma": Opt(float, 1e-4, "Sparse penalty: pull on every |BN scale| or sss gate towards 0 per step."),
        "round_to": Opt(str, "8", "Channel counts become multiples of this; auto (--by latency): measured."),
        "steps_per_layer": Opt(int, 50, "Retraining batches after each layer."),
        "epochs": Opt(float, 0.0, "Final fine-tune epochs."),
        "retrain_check": Opt(
            bool,
            True,
            "Score the fine-tune after every epoch on the validation images (held-out 10% of --data when it "
            "has no val/ folder) and keep its best epoch if that lowered the loss; else the model from before it.",
            "--retrain-check/--no-retrain-check",
        ),
        "patience": Opt(
            int, 0, "With --retrain-check: stop the fine-tune after this many epochs without a better score (0: never)."
        ),
        "distill": Opt(bool, False, "Learn from the unpruned model (no labels needed)."),
        "distill_loss": Opt(
            str, "centered", f"{' or '.join(DISTILL_LOSSES)} (centered suits images unlike the training data)."
        ),
        "temperature": Opt(float, 2.0, "Distillation temperature."),
        "mixup": Opt(float, 0.0, "Mix image pairs while retraining, Beta(a, a); 0 = off."),
        "label_weight": Opt(float, 0.0, "With --distill and labelled images: add this times the label loss."),
        "crop_scale": Opt(float, 0.5, "Retraining crops keep at least this share of each image."),
        "feature_weight": Opt(float, 0.0, "With --distill: add this times the loss on every layer's output."),
        "student_dropout": Opt(
            bool,
            True,
            "With --distill: the pruned model's dropout stays on while it learns (the unpruned model answers "
            "without it); --no-student-dropout turns it off.",
            "--student-dropout/--no-student-dropout",
        ),
        "optimizer": Opt(str, "adamw", "adamw or sgd (nesterov, momentum 0.9)."),
        "lr": Opt(float, 3e-5, "Retraining learning rate."),
        "batch_size": Opt(int, 32, "Batch size for retraining and evaluation."),
        "calibration_images": Opt(int, 32, "Images for sensitivity measurement and data criteria."),
        "reconstruct": Opt(
            bool,
            True,
            "With --data: re-fit every dense layer to the unpruned outputs (least squares).",
            "--reconstruct/--no-reconstruct",
        ),
        "reconstruct_images": Opt(int, 512, "Images the reconstruction fits on (at most; all when fewer)."),
        "reconstruct_mirror": Opt(
            bool,
            True,
            "Reconstruction also fits on the mirror image of each image (off for images whose left and right "
            "differ in meaning).",
            "--reconstruct-mirror/--no-reconstruct-mirror",
        ),
        "rounds": Opt(
            str,
            "auto",
            "Allocate and prune in this many rounds, re-measuring in between (NetAdapt-style); auto: 4 when "
            "sensitivity on images drives a params, MACs or latency cut to 0.7 or less, else 1.",
        ),
        "runtime": Opt(str | None, None, "--by latency: runtime to measure on (litert, onnxruntime, ...) [litert]."),
        "threads": Opt(int | None, None, "--by latency: threads of that runtime [1]."),
        "precision": Opt(str | None, None, "--by latency: fp32, fp16 or int8 file [fp32]."),
        "cache_dir": Opt(str | None, None, "--by latency: latency table folder [~/.cache/mobileprune/latency]."),
        "allocate_per": Opt(
            str | None, None, "--by latency: damage per ms, per macs, or auto (both timed; less damage wins) [auto]."
        ),
        "benchmark_binary": Opt(str | None, None, "--by latency --device adb: benchmark_model to push or run."),
        "cpu_mask": Opt(str | None, None, "--by latency --device adb: taskset mask, e.g. f0."),
        "device": Opt(str, "cpu", "cpu or cuda (retraining); adb[:SERIAL]: --by latency measured on that phone."),
        "seed": Opt(int, 0, "Seed of random weights, data order and random criteria."),
        "workers": Opt(int, 1, "Processes loading images for retraining and evaluation."),
        "amp": Opt(bool, False, "With --device cuda: bfloat16 mixed precision for retraining."),
    }


def with_options(groups: tuple[str, ...], exclude: tuple[str, ...] = (), **defaults: Any) -> Callable:
    """Add the named option groups ("model", "shrink") to a command.

    The command receives `load_args` (a dict for `load_model`) for "model" and `config` (a
    `ShrinkConfig` without its target) for "shrink", instead of the individual options.
    """
    tables = {"model": MODEL_OPTIONS, "shrink": _shrink_options()}

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name not in ("config", "load_args")]
        added: list[inspect.Parameter] = []
        names: dict[str, set[str]] = {}
        for group in groups:
            names[group] = set()
            for name, opt in tables[group].items():
                if name in exclude:
                    continue
                names[group].add(name)
                info = typer.Option(opt.flag, help=opt.help) if opt.flag else typer.Option(help=opt.help)
                annotation = Annotated[opt.kind, info]
                added.append(
                    inspect.Parameter(
                        name,
                        inspect.Parameter.KEYWORD_ONLY,
                        default=defaults.get(name, opt.default),
                        annotation=annotation,
                    )
                )

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            if "model" in names:
                kwargs["load_args"] = {k: kwargs.pop(k) for k in names["model"]}
            if "shrink" in names:
                fixed = {k: v for k, v in defaults.items() if k in exclude}  # e.g. sweep's criterion=None
                kwargs["config"] = shrink_config(**fixed, **{k: kwargs.pop(k) for k in names["shrink"]})
            return command(**kwargs)

        params = own + added
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def shrink_config(
    *,
    criterion_option: list[str] | None = None,
    allocation_option: list[str] | None = None,
    schedule_option: list[str] | None = None,
    max_layer_ratio: float | None = None,
    ucb_pulls: float | None = None,
    distill_loss: str = "centered",
    temperature: float = 2.0,
    mixup: float = 0.0,
    label_weight: float = 0.0,
    crop_scale: float = 0.5,
    feature_weight: float = 0.0,
    student_dropout: bool = True,
    amp: bool = False,
    optimizer: str = "adamw",
    lr: float = 3e-5,
    criterion: str | None = "l1",
    allocation: str = "auto",
    schedule: str = "oneshot",
    distill: bool = False,
    runtime: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    cache_dir: str | None = None,
    allocate_per: str | None = None,
    benchmark_binary: str | None = None,
    cpu_mask: str | None = None,
    device: str = "cpu",
    **settings: Any,
) -> ShrinkConfig:
    """A `ShrinkConfig` (target 1.0 until the command sets it) from the shared options.

    `criterion=None` (a sweep: the criterion changes per point) keeps the shortcut options for whichever
    criterion declares them (`sweep.method_config` hands each its own).
    """
    criterion_options: dict[str, Any] = {}
    if criterion in CRITERIA:
        criterion_options = CRITERIA.parse_options(criterion, criterion_option)
    allocation_options = ALLOCATIONS.parse_options(allocation, allocation_option) if allocation in ALLOCATIONS else {}
    schedule_options = SCHEDULES.parse_options(schedule, schedule_option) if schedule in SCHEDULES else {}
    if ucb_pulls is not None and (criterion is None or _declares(CRITERIA, criterion, "pulls_per_channel")):
        criterion_options.setdefault("pulls_per_channel", ucb_pulls)
    if max_layer_ratio is not None and _declares(ALLOCATIONS, allocation, "max_fraction"):
        allocation_options.setdefault("max_fraction", max_layer_ratio)
    train = TrainConfig(
        optimizer=optimizer,
        lr=lr,
        distill=distill,
        temperature=temperature,
        distill_loss=distill_loss,
        mixup=mixup,
        label_weight=label_weight,
        crop_scale=crop_scale,
        feature_weight=feature_weight,
        student_dropout=student_dropout,
        amp=amp,
    )
    for name in ("round_to", "rounds"):
        if name in settings:
            settings[name] = _whole_or_auto(name, settings[name])
    return ShrinkConfig(
        target=1.0,
        criterion=criterion or "l1",
        allocation=allocation,
        schedule=schedule,
        distill=distill,
        train=train,
        criterion_options=criterion_options,
        allocation_options=allocation_options,
        schedule_options=schedule_options,
        cost_options=_cost_options(
            runtime, threads, precision, cache_dir, device, benchmark_binary, cpu_mask, allocate_per
        ),
        device="cpu" if device.startswith("adb") else device,  # a phone measures latency; training stays here
        **settings,
    )


def _whole_or_auto(name: str, text: str | int) -> int | str:
    if text == "auto" or isinstance(text, int):
        return text
    try:
        return int(text)
    except ValueError:
        flag = "--" + name.replace("_", "-")
        raise UserError(f"{flag} must be a whole number of at least 1 or auto, not '{text}'") from None


def _cost_options(runtime, threads, precision, cache_dir, device, binary, cpu_mask, allocate_per) -> dict[str, Any]:
    """The --by latency settings the user gave (the cost model has defaults for the rest)."""
    given = {
        "runtime": runtime,
        "threads": threads,
        "precision": precision,
        "cache_dir": cache_dir,
        "device": device if device.startswith("adb") else None,
        "benchmark_binary": binary,
        "cpu_mask": cpu_mask,
        "allocate_per": allocate_per,
    }
    return {k: v for k, v in given.items() if v is not None}


def _declares(registry, name: str, option: str) -> bool:
    return name in registry and option in registry.options(name)


def target(text: str) -> float:
    return parse_target(text)


def resolution(text: str) -> int | str:
    """'160' → 160 px; 'auto' stays (the pipeline picks the size)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--resolution must be a whole number of pixels or auto, not '{text}'") from None


def speedup(text: str) -> float:
    """'2' → keep 0.5 of the latency; a speed-up must be a number above 1."""
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--speedup must be a number above 1 (2 = twice as fast), not '{text}'") from None
    if not value > 1 or value != value or value == float("inf"):
        raise UserError(f"--speedup must be a number above 1 (2 = twice as fast), not {text}")
    return value


def counts(text: str, option: str) -> list[int]:
    """'1,2,4' as whole numbers of at least 1."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{option} takes whole numbers such as 1,2,4, not '{text}'") from None
    if not values or min(values) < 1:
        raise UserError(f"{option} takes whole numbers of at least 1, not '{text}'")
    return values


def read_labels(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"--labels '{path}' is not a file (expected one class name per line)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
