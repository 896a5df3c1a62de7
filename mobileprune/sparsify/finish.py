"""The last step of `sparsify`: the sparse model, its masks and its report (a `ShrinkReport` with a sparsity
section, so every reader of shrink outputs reads it)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..prune.cost import Cost, count_cost
from ..prune.finish import ShrinkResult
from ..prune.report import ShrinkReport
from ..reporting.provenance import versions
from ..version import __version__
from .masks import WeightMasks, sparse_layers
from .xnnpack import layer_rows, xnnpack_sparse

if TYPE_CHECKING:
    from .methods import SparsifyMethod
    from .run import SparsifyRun

EXCLUDED = "the first conv (it reads the image) and depthwise convs stay dense"


def finish_sparsify(run: SparsifyRun, method: SparsifyMethod) -> ShrinkResult:
    model, loaded, config = run.model.eval(), run.loaded, run.config
    layers = sparse_layers(model)
    masks = WeightMasks.of_zeros(model)  # what the weights hold: the held masks plus any zero they had before
    weights = sum(m.weight.numel() for m in layers.values())
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    original = run.original_weights
    dense = count_cost(model, run.example)
    run.timings["total_s"] = time.time() - run.started
    achieved = zeros / max(weights, 1)
    sparsity = {
        "method": method.name,
        "description": method.description,
        "scope": config.scope,
        "requested": config.sparsity,
        "achieved": round(achieved, 4),
        "of_original": round((zeros + original - weights) / max(original, 1), 4),
        "weights": weights,
        "zeros": zeros,
        "excluded": EXCLUDED,
        "layers": layer_rows(model),
        "xnnpack": xnnpack_sparse(model),
        **run.notes,
    }
    report = ShrinkReport(
        mobileprune=__version__,
        source={"path": loaded.source, "weights": loaded.weights, "sha256": loaded.sha256},
        spec=loaded.spec,
        config=config.to_json(),
        target=config.sparsity,
        by="sparsity",
        achieved=round(achieved, 4),
        before=run.before,
        after=Cost(dense.params - zeros, dense.macs),  # a sparse model's parameters are its nonzero weights
        allocation={"strategy": method.description},
        groups=[],
        layers=[],
        schedule_log=[],
        accuracy=run.accuracy,
        retraining=_retraining(run),
        timings_s={k: round(v, 2) for k, v in run.timings.items()},
        versions=versions(),
        sparsity=sparsity,
    )
    return ShrinkResult(model, loaded.spec, run.plan, report, run.example, masks=masks.masks)


def _retraining(run: SparsifyRun) -> dict:
    if run.trainer is None:
        return {"done": False, "note": "no --data given: one-shot, accuracy not recovered"}
    mode = "distillation from the dense model" if run.config.distill else "labels"
    return {
        "done": bool(run.trainer.steps_done),
        "data": str(run.data.root),
        "mode": mode,
        "steps": run.trainer.steps_done,
        **({"check": run.check} if run.check is not None else {}),
    }
