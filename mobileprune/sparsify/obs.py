"""Layer-wise Optimal Brain Surgeon (Dong et al. 2017; in its modern form OBC / SparseGPT, Frantar et al.).

For one layer with weights W (rows = outputs, columns = inputs × kernel) and calibration inputs X, the
output error of changed weights W' is the quadratic (W' - W) H (W' - W)ᵀ with H = X Xᵀ / n, the layer's
input Hessian. OBS uses it twice:

- which weights to remove: removing w_q alone, with the best compensation of the others, costs
  w_q² / [H⁻¹]_qq (the OBS saliency), not w_q² (magnitude) — a small weight on a strongly correlated input
  is cheap, a small weight on an input nothing else carries is not;
- how to compensate: with the removed set S fixed, the remaining weights R of each row move to the exact
  minimiser, w'_R = w_R + H_RR⁻¹ H_RS w_S, which needs no labels and no gradients.

Layers are done in network order, each on inputs X̃ from the network already sparsified before it. With a
dense `reference` (the default of the `obs` method) each layer is fitted to the *dense* network's output
W X rather than to W X̃: the row target becomes w* = w + (H̃ + λI)⁻¹ (G - H̃) w, with G = X̃ Xᵀ / n, the
least-squares weights that map the sparse inputs to the dense outputs, and OBS selects and compensates from
w*. So a layer also repairs what the layers before it lost (the reconstruction idea of ../prune/reconstruct.py);
where nothing was lost yet (X̃ = X), w* = w exactly. H is damped by a small multiple of its mean diagonal
(SparseGPT's 1%) so that layers with fewer samples than inputs (a classifier after pooling) stay solvable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..prune.layer_inputs import LayerInputs
from .masks import WeightMasks
from .selection import layer_sparsities, masks_at

DAMPING = 0.01
ROW_CHUNK = 64  # rows solved together; memory is ROW_CHUNK × kept² doubles


@dataclass(frozen=True)
class ObsLayer:
    layer: str
    sparsity: float
    error_zeroed: float  # relative output error of zeroing the chosen weights, nothing compensated
    error_compensated: float  # after compensation

    def to_json(self) -> dict:
        return {
            "layer": self.layer,
            "sparsity": round(self.sparsity, 4),
            "error_zeroed": round(self.error_zeroed, 5),
            "error_compensated": round(self.error_compensated, 5),
        }


@torch.no_grad()
def input_hessian(
    layer: nn.Module, inputs: Iterable[torch.Tensor], reference_inputs: Iterable[torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """H = X̃ X̃ᵀ / n over every output position of every calibration image (float64), from the layer's
    `inputs` batch by batch, and with a dense reference's inputs to the same layer the cross term G = X̃ Xᵀ / n."""
    hessian, cross, count = 0.0, 0.0, 0
    dense_inputs = iter(reference_inputs) if reference_inputs is not None else None
    for inp in inputs:
        cols = layer_inputs(layer, inp)
        hessian = hessian + cols.T @ cols
        if dense_inputs is not None:
            cross = cross + cols.T @ layer_inputs(layer, next(dense_inputs))
        count += cols.shape[0]
    return hessian / max(count, 1), (cross / max(count, 1) if dense_inputs is not None else None)


def corrected(weight: torch.Tensor, raw: torch.Tensor, damped: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
    """w* = w + (H + λI)⁻¹ (G - H) w per row: the weights mapping the sparse network's inputs to the dense
    outputs, ridge-pulled towards w (so w* = w exactly when the inputs are the dense ones)."""
    w = weight.double()
    return w + torch.linalg.solve(damped, (cross - raw) @ w.T).T


def layer_inputs(layer: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """A layer's input as samples × (in features · kernel), the columns of its weight matrix."""
    if isinstance(layer, nn.Linear):
        return inp.reshape(-1, inp.shape[-1]).double()
    cols = F.unfold(inp, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
    return cols.permute(0, 2, 1).reshape(-1, cols.shape[1]).double()


def damped(hessian: torch.Tensor, damping: float = DAMPING) -> torch.Tensor:
    diag = hessian.diagonal()
    scale = float(diag.mean()) if float(diag.mean()) > 0 else 1.0
    return hessian + damping * scale * torch.eye(hessian.shape[0], dtype=hessian.dtype, device=hessian.device)


def saliency(weight: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """OBS cost of removing each weight alone (with the others compensated): w² / [H⁻¹]_qq."""
    inverse_diag = torch.linalg.inv(hessian).diagonal()
    return weight.double().pow(2) / inverse_diag[None, :]


def compensate(weight: torch.Tensor, keep: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """Each row's optimal weights with its masked entries forced to zero: w'_R = w_R + H_RR⁻¹ H_RS w_S."""
    w = weight.double()
    out = w * keep
    for start in range(0, w.shape[0], ROW_CHUNK):
        rows, kept = w[start : start + ROW_CHUNK], keep[start : start + ROW_CHUNK]
        counts = kept.sum(1)
        width = int(counts.max())
        if width == 0 or bool(kept.all()):
            continue
        order = (~kept).to(torch.int8).argsort(dim=1, stable=True)[:, :width]  # kept columns first
        valid = torch.arange(width)[None, :] < counts[:, None]
        block = hessian[order[:, :, None], order[:, None, :]]
        pair = valid[:, :, None] & valid[:, None, :]
        eye = torch.eye(width, dtype=block.dtype).expand_as(block)
        block = torch.where(pair, block, eye)  # padding solves to zero
        rhs = torch.gather((rows * ~kept) @ hessian, 1, order) * valid
        delta = torch.linalg.solve(block, rhs.unsqueeze(-1)).squeeze(-1) * valid
        updated = torch.gather(rows, 1, order) + delta
        chunk = out[start : start + ROW_CHUNK]
        chunk.scatter_(1, order, torch.where(valid, updated, torch.gather(chunk, 1, order)))
    return out.to(weight.dtype)


def output_error(weight: torch.Tensor, new: torch.Tensor, hessian: torch.Tensor) -> float:
    """tr(ΔW H ΔWᵀ) / tr(W H Wᵀ): the layer's output error relative to its output energy."""
    w, d = weight.double(), (new - weight).double()
    energy = float(((w @ hessian) * w).sum())
    return float(((d @ hessian) * d).sum()) / max(energy, 1e-30)


@torch.no_grad()
def obs_sparsify(
    model: nn.Module,
    layers: dict[str, nn.Module],
    batches: Sequence[torch.Tensor],
    sparsity: float,
    previous: WeightMasks | None = None,
    tick: Callable[[], None] | None = None,
    reference: nn.Module | None = None,
    scope: str = "layer",
) -> tuple[WeightMasks, list[ObsLayer]]:
    """Sparsify `layers` of `model` in order to `sparsity` each, OBS-selected and compensated; with a dense
    `reference` (an unchanged copy of `model`) each layer is fitted to the reference's outputs."""
    model.eval()
    masks: dict[str, torch.Tensor] = {}
    report = []
    shares = layer_sparsities({name: tuple(layer.weight.shape) for name, layer in layers.items()}, sparsity, scope)
    sparse_inputs = LayerInputs(model, batches)  # layers in order: each runs from its block's cached input
    dense_inputs = LayerInputs(reference, batches) if reference is not None else None
    for name, layer in layers.items():
        raw, cross = input_hessian(layer, sparse_inputs.of(name), dense_inputs.of(name) if dense_inputs else None)
        hessian = damped(raw)
        weight = layer.weight.detach().reshape(layer.weight.shape[0], -1).double()
        if cross is not None:
            weight = corrected(weight, raw, hessian, cross)
        score = saliency(weight, hessian).reshape(layer.weight.shape)
        prior = WeightMasks({name: previous.masks[name]}) if previous is not None and name in previous.masks else None
        keep = masks_at({name: score}, shares[name], "layer", prior).masks[name]
        flat_keep = keep.reshape(weight.shape)
        new = compensate(weight, flat_keep, hessian).to(layer.weight.dtype)
        report.append(
            ObsLayer(
                name,
                1 - float(flat_keep.float().mean()),
                output_error(weight, weight * flat_keep, hessian),
                output_error(weight, new, hessian),
            )
        )
        layer.weight.copy_(new.reshape(layer.weight.shape))
        masks[name] = keep
        if tick:
            tick()
    return WeightMasks(masks), report
