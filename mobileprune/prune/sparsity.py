"""Sparsity training: train with a penalty that drives unimportant channels' scale factors to zero.

Two regularisers, one per method that needs it, both applied by the `Trainer` after every optimiser step:

- `BNScaleL1` (network slimming, Liu et al. 2017): the batch norms' own scales γ carry the L1 penalty.
- `ChannelGates` (sparse structure selection, Huang & Wang 2018): a new scale factor per channel of every
  prunable group, trained with the model under a sparse penalty, then folded into the weights.

Both penalties are proximal (soft-threshold) steps outside the weight optimiser, decoupled like AdamW's
weight decay: inside the loss, Adam's per-weight scaling would turn an L1 penalty into the same sign step
for every channel and rank nothing. A scale that the task loss does not defend reaches exactly zero.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .graph import PruningGraph, is_depthwise


class SparsityRegulariser:
    """What sparsity training adds to an ordinary training step."""

    description: str

    def zero_grad(self) -> None:
        """Clear the gradients of parameters the weight optimiser does not own."""

    def step(self) -> None:
        """One proximal step, after the weight optimiser's step."""
        raise NotImplementedError

    def finish(self) -> None:
        """Leave the model a plain model again (fold anything that was added for training)."""


def soft_threshold(x: torch.Tensor, amount: float) -> torch.Tensor:
    return torch.sign(x) * (x.abs() - amount).clamp(min=0)


class BNScaleL1(SparsityRegulariser):
    """Every batch norm's |γ| moves `strength` towards 0 per step; the task loss pushes useful ones back."""

    def __init__(self, model: nn.Module, strength: float):
        self.norms = [
            m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
        ]
        self.strength = strength
        self.description = f"L1 {strength:g} on BN scales"

    @torch.no_grad()
    def step(self) -> None:
        for m in self.norms:
            m.weight.copy_(soft_threshold(m.weight, self.strength))


class ChannelGates(SparsityRegulariser):
    """One learnable scale per root channel of every group, where the group's channels are read.

    A gate multiplies its channel at the input of every consumer that mixes channels (1×1 and full convs,
    linears): there the channel's whole effect on the network passes, whatever non-linearity, batch norm,
    depthwise conv or residual add came before. Gate 0 therefore means exactly "removing this channel
    changes nothing", and any gate folds exactly into the consumers' weights, so the trained gates leave
    no trace in the architecture (unlike network slimming, this also works for groups without batch norm).

    The gates are optimised by accelerated proximal gradient (APG), the optimiser of the SSS paper, in its
    momentum form: z = g − η∇g; v = S(z) − g + μv; g = S(z) + μv, with S the soft threshold by `strength`.
    Gradients are taken at the extrapolated point g, which momentum carries back and forth across zero; the
    proximal point S(z) is the sparse one (exact zeros), so that is what `values()` and `finish()` use.

    Departure from the paper: each group's gate gradient is divided by its own running RMS (one number
    per group, so the ranking inside a group is untouched). Raw gate gradients differ by orders of
    magnitude between the first and the last layers of a MobileNet; with one learning rate the early
    gates diverge while the late ones do not move, and with batch norm frozen, as retraining here keeps
    it, no later BN renormalises a layer whose gates all shrank. The sss results with this choice are in
    benchmarks/results/sweep_cifar/.
    """

    def __init__(
        self, model: nn.Module, graph: PruningGraph, strength: float, lr: float = 0.003, momentum: float = 0.9
    ):
        self.model = model
        self.strength = strength
        self.lr = lr
        self.momentum = momentum
        self.gates: dict[str, nn.Parameter] = {}
        self._velocity: dict[str, torch.Tensor] = {}
        self._proximal: dict[str, torch.Tensor] = {}
        self._grad_sq: dict[str, float] = {}
        self._steps = 0
        # per consumer: (group, consumer input indices, group root channels)
        self._reads: dict[str, list[tuple[str, torch.Tensor, torch.Tensor]]] = {}
        device = next(model.parameters()).device
        for group in graph.groups:
            self.gates[group.name] = nn.Parameter(torch.ones(group.channels, device=device))
            self._velocity[group.name] = torch.zeros(group.channels, device=device)
            self._proximal[group.name] = torch.ones(group.channels, device=device)
            for member in group.members:
                module = model.get_submodule(member.module)
                if member.side != "in" or is_depthwise(module):
                    continue
                if not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                    continue
                roots = torch.tensor([r for r, _ in member.index_map], device=device)
                idxs = torch.tensor([i for _, i in member.index_map], device=device)
                self._reads.setdefault(member.module, []).append((group.name, idxs, roots))
        self._handles = [model.get_submodule(name).register_forward_pre_hook(self._hook(name)) for name in self._reads]
        self.description = f"SSS gates, sparse penalty {strength:g} (APG, lr {lr:g})"

    def _hook(self, name: str):
        module = self.model.get_submodule(name)
        channels = module.in_features if isinstance(module, nn.Linear) else module.in_channels
        reads = self._reads[name]

        def hook(mod, args):
            x = args[0]
            scale = torch.ones(channels, device=x.device, dtype=x.dtype)
            for group, idxs, roots in reads:
                scale = scale.index_put((idxs,), self.gates[group][roots].to(x.dtype))
            shape = (-1,) if isinstance(mod, nn.Linear) else (-1,) + (1,) * (x.dim() - 2)
            return (x * scale.view(shape), *args[1:])

        return hook

    def zero_grad(self) -> None:
        for g in self.gates.values():
            g.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self._steps += 1
        for name, g in self.gates.items():
            if g.grad is None:
                continue
            # one running RMS per group (bias-corrected, as in Adam): keeps the ranking inside the group
            self._grad_sq[name] = 0.9 * self._grad_sq.get(name, 0.0) + 0.1 * float(g.grad.pow(2).mean())
            rms = (self._grad_sq[name] / (1 - 0.9**self._steps)) ** 0.5
            v = self._velocity[name]
            shrunk = soft_threshold(g - self.lr * g.grad / (rms + 1e-12), self.strength)
            v.mul_(self.momentum).add_(shrunk - g)
            g.copy_(shrunk + self.momentum * v)
            self._proximal[name] = shrunk

    def values(self) -> dict[str, torch.Tensor]:
        """The learned gates (the sparse proximal point of the last step)."""
        return {name: p.clone().cpu() for name, p in self._proximal.items()}

    @torch.no_grad()
    def settle(self) -> None:
        """Set the gates to the last proximal point: the model then computes what `finish()` will fold."""
        for name, g in self.gates.items():
            g.copy_(self._proximal[name])

    @torch.no_grad()
    def finish(self) -> None:
        """Fold every gate into its consumers' weights and remove the hooks: same function, plain model."""
        self.settle()
        for h in self._handles:
            h.remove()
        self._handles = []
        for name, reads in self._reads.items():
            module = self.model.get_submodule(name)
            for group, idxs, roots in reads:
                _scale_input_channels(module, idxs, self.gates[group].detach()[roots])


def _scale_input_channels(module: nn.Module, idxs: torch.Tensor, factors: torch.Tensor) -> None:
    """Multiply input channels `idxs` of a conv or linear by `factors`, in its weights."""
    w = module.weight
    if isinstance(module, nn.Linear):
        w[:, idxs] *= factors.to(w.dtype)
        return
    per_group_in = module.in_channels // module.groups
    per_group_out = module.out_channels // module.groups
    for i, f in zip(idxs.tolist(), factors.tolist(), strict=True):
        g = i // per_group_in
        w[g * per_group_out : (g + 1) * per_group_out, i % per_group_in] *= f
