"""Compensated masking: a removed channel reads as its best linear prediction from the channels that remain.

Sensitivity measures each group's damage by masking: its consumers see zeros where the removed channels
were. When reconstruction follows the prune (see reconstruct.py), zeros overstate the damage: the re-fit
consumer recovers whatever part of a removed channel the kept channels can express, because activations
are correlated. This module measures that part in closed form. For a consumer with input channels x, mean
μ and covariance Σ (on the images reconstruction will fit on), the removed set S is replaced by its linear
least-squares prediction from the kept set R,

    x_S ← μ_S + Σ_SR Σ_RR⁻¹ (x_R − μ_R),

which is exactly what re-fitting that consumer's weights on R (and its bias) could absorb: W_S x_S becomes
(W_S Σ_SR Σ_RR⁻¹) x_R + const. So a compensated probe predicts the damage left *after* reconstruction, and the
allocation stops avoiding groups whose channels are redundant. Only layers reconstruction re-fits get
predictions, and only where the statistics rest on enough samples (SAMPLES_PER_CHANNEL); other consumers
still see zeros.

The probes run on calibration images, and a prediction fitted on those very images flatters itself: in
the widest layers, with more channels than independent samples, it is several times better on the images
it was fitted on than on new ones. So the statistics leave the probe images (and their mirrors) out
(`held_apart`), and a probe charges what the re-fit will leave on images it never saw.

A linear after global average pooling (a classifier) sees one sample per image: too few for its 1000+
channels, and leaving it out makes its producer the only group charged zeroed damage, so the allocation
would compare compensated and uncompensated probes. Its statistics are taken from the positions of the map
before pooling instead. The prediction is linear, so coefficients fitted on positions apply unchanged to
their average: x̄_S ← μ_S + B (x̄_R − μ_R).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..channels_last import channels_last
from .global_pooling import pooled_maps
from .moments import cross_moments

RIDGE = 1e-3  # relative to the mean kept-channel variance: keeps Σ_RR invertible for dead or duplicate channels
# A covariance from fewer samples than this many per channel is not trusted: with fewer samples than
# channels any kept set "predicts" the removed channels exactly on those samples, so the probe would charge
# nothing and the allocation would strip that layer.
SAMPLES_PER_CHANNEL = 8


@dataclass
class InputStatistics:
    """Per-channel mean and covariance of each listed layer's input, over calibration images (layers with too
    few samples per channel are left out: their consumers see zeros)."""

    mean: dict[str, torch.Tensor]
    covariance: dict[str, torch.Tensor]

    @classmethod
    @torch.no_grad()
    def measure(cls, model: nn.Module, layers: Sequence[str], batches: Sequence[torch.Tensor]) -> InputStatistics:
        """One forward pass per batch, with every layer's input accumulated in float64 (a pooled linear's from
        the map before pooling)."""
        count: dict[str, int] = {}
        sums: dict[str, torch.Tensor] = {}
        products: dict[str, torch.Tensor] = {}
        model.eval()
        pooled = pooled_maps(model, layers, batches[0][:2])

        def accumulate(name: str, rows: torch.Tensor) -> None:
            count[name] = count.get(name, 0) + rows.shape[0]
            sums[name] = sums.get(name, 0) + rows.sum(0).double()
            products[name] = products.get(name, 0) + cross_moments(rows, rows)

        def make_hook(name: str):
            def hook(module, args):
                accumulate(name, _channels_last(module, args[0]))

            return hook

        def make_map_hook(name: str):
            def hook(module, args, y):
                accumulate(name, y.movedim(1, -1).reshape(-1, y.shape[1]))

            return hook

        with channels_last(batches[0], model):  # a forward pass per batch, at CPU speed (before the hooks)
            handles = [
                model.get_submodule(n).register_forward_pre_hook(make_hook(n)) for n in layers if n not in pooled
            ]
            handles += [model.get_submodule(s).register_forward_hook(make_map_hook(n)) for n, s in pooled.items()]
            try:
                for x in batches:
                    model(x)
            finally:
                for h in handles:
                    h.remove()
        count = {n: c for n, c in count.items() if c >= SAMPLES_PER_CHANNEL * sums[n].shape[0]}
        mean = {n: sums[n] / count[n] for n in count}
        covariance = {n: products[n] / count[n] - torch.outer(mean[n], mean[n]) for n in count}
        return cls(mean, covariance)

    def prediction_hook(self, layer: str, module: nn.Module, removed: Sequence[int]):
        """A forward pre-hook for `module` (named `layer`) that replaces `removed` inputs by their prediction."""
        mean, cov = self.mean[layer], self.covariance[layer]
        gone = torch.tensor(sorted(removed))
        kept = torch.tensor(sorted(set(range(cov.shape[0])) - set(removed)))
        cov_kept = cov[kept][:, kept]
        ridge = RIDGE * float(cov_kept.diagonal().mean().clamp_min(1e-12))
        cov_kept = cov_kept + ridge * torch.eye(len(kept), dtype=cov.dtype)
        coefficients = torch.linalg.solve(cov_kept, cov[kept][:, gone]).T.float()  # |S| × |R|
        offset = (mean[gone] - coefficients.double() @ mean[kept]).float()
        dim = -1 if isinstance(module, nn.Linear) else 1

        def hook(mod, args):
            x = args[0]
            kept_part = x.index_select(dim, kept.to(x.device)).movedim(dim, -1)
            predicted = (kept_part @ coefficients.T.to(x.device) + offset.to(x.device)).movedim(-1, dim)
            return (x.index_copy(dim, gone.to(x.device), predicted), *args[1:])

        return hook

    def __contains__(self, layer: str) -> bool:
        return layer in self.mean


def held_apart(fitting: Sequence[torch.Tensor], probes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """`fitting` batches without the images of `probes` or their mirror images (compared exactly: they come
    from the same seeded sample)."""
    seen = set()
    for batch in probes:
        for image in batch:
            seen.update((_key(image), _key(image.flip(-1))))
    kept = [torch.stack(rest) for b in fitting if (rest := [image for image in b if _key(image) not in seen])]
    return kept or list(fitting)  # every image is a probe image: in-sample statistics beat none


def _key(image: torch.Tensor) -> int:
    return hash(image.detach().cpu().contiguous().numpy().tobytes())


def _channels_last(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Rows of input channels: (samples × channels) for a linear, (images·positions × channels) for a conv."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    return x.movedim(1, -1).reshape(-1, x.shape[1])
