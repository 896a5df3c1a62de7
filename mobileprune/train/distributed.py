"""One shrink over several processes under `torchrun`: PyTorch's own process group and DDP, nothing home-made.

Every rank runs the same pipeline. Decisions computed from the same seeded calibration images (sensitivity,
allocation, reconstruction) come out the same on every rank and are *checked* to (`check_agree` gathers a
digest of each decision); decisions that depend on a clock (latency measurements) are rank 0's, broadcast.
Retraining wraps the model in DistributedDataParallel; each rank trains on its share of every global
batch (sampling.py) and the loss is scaled so the averaged gradient is the global batch's mean, which is
what one process with the same batch computes. Evaluation sums per-class counts over ranks. Only rank 0
prints and writes files. NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

from ..errors import UserError

T = TypeVar("T")


def launched() -> bool:
    """True inside a multi-process torchrun job (it sets WORLD_SIZE for every process)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str) -> str:
    """Join torchrun's process group (once); returns the device this rank trains on."""
    if not launched():
        return device
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise UserError("--device cuda under torchrun, but this machine has no usable GPU: use --device cpu (gloo)")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def broadcast(value: T) -> T:
    """Rank 0's `value` on every rank (unchanged in a single process)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_agree(what: str, value: Any) -> None:
    """Fail loudly if the ranks computed different `value`s (compared by a digest of its JSON)."""
    if not active():
        return
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    digests: list[str | None] = [None] * world()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) > 1:
        raise RuntimeError(f"the {world()} processes disagree on {what}: pruning decisions must be identical")


def barrier() -> None:
    if active():
        dist.barrier()


def sum_tensor(t: torch.Tensor) -> torch.Tensor:
    """The sum over ranks (a copy; `t` itself is untouched)."""
    if not active():
        return t
    out = t.clone()
    dist.all_reduce(out)
    return out


def global_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the global batch (dim 0), differentiable: each rank's gradient flows into the others' sums."""
    if not active():
        return x.mean(dim=0, keepdim=True)
    with warnings.catch_warnings():  # deprecated in favour of a private module; still the public autograd one
        warnings.simplefilter("ignore", FutureWarning)
        from torch.distributed.nn.functional import all_reduce

        total = all_reduce(x.sum(dim=0, keepdim=True))
    count = sum_tensor(torch.tensor(float(len(x)), device=x.device))
    return total / count


def global_batch_share(local: int, device: torch.device | str) -> float:
    """world · local / global: the factor that turns a local mean loss into a DDP-averaged global mean."""
    if not active():
        return 1.0
    total = sum_tensor(torch.tensor(float(local), device=device))
    return world() * local / float(total)


def wrap(model: nn.Module, device: str) -> nn.Module:
    """DDP around `model` under torchrun (rank 0's weights are broadcast on wrapping), else `model` itself."""
    if not active():
        return model
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)
