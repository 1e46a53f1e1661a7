"""Process-group setup and model wrapping for ``torchrun`` (DDP or FSDP2), gloo on CPU, nccl on GPU.

A run launched without ``torchrun`` is a world of one and needs no process group. Under
``torchrun`` the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) selects the rank;
:func:`init_distributed` opens the group and :func:`wrap_model` applies the strategy:

- ``ddp``: :class:`torch.nn.parallel.DistributedDataParallel`, gradients averaged across ranks.
- ``fsdp2``: :func:`torch.distributed.fsdp.fully_shard` on every decoder layer, then on the
  root, so parameters, gradients and optimiser state are sharded over the ranks.

Full (unsharded) state dicts for checkpoints come from ``torch.distributed.checkpoint``'s
state-dict API, which handles all three cases uniformly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from liquidgen.errors import ConfigError

# Collective timeout: generous, because rank 0 alone writes checkpoints while others wait.
_TIMEOUT = datetime.timedelta(minutes=30)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files, logs and shows the progress bar."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when a process group is open (world size > 1)."""
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Open the process group when launched by torchrun (gloo on CPU, nccl with CUDA).

    With ``WORLD_SIZE`` unset or 1 nothing is initialised and a single-process
    :class:`DistInfo` is returned. Each CUDA rank uses the GPU ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=_TIMEOUT)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    """Close the process group if one is open."""
    if dist.is_initialized():
        dist.destroy_process_group()


def resolve_strategy(requested: str, info: DistInfo) -> str:
    """Turn the config's ``distributed`` value into ``none``, ``ddp`` or ``fsdp2`` for this job."""
    if requested == "auto":
        return "ddp" if info.enabled else "none"
    if requested != "none" and not info.enabled:
        return "none"  # a world of one: wrapping would only add overhead
    if requested == "none" and info.enabled:
        raise ConfigError("distributed: none cannot run under torchrun with more than one process")
    return requested


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks of a transformers causal LM (the FSDP2 sharding units)."""
    layers = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not layers:
        raise ConfigError(f"{type(model).__name__}: no decoder layer list found to shard")
    return list(max(layers, key=len))


def wrap_model(model: nn.Module, strategy: str, info: DistInfo) -> nn.Module:
    """Apply DDP or FSDP2 to ``model`` (already on ``info.device``); ``none`` returns it as is."""
    if strategy == "none":
        return model
    if strategy == "ddp":
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if strategy == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(info.device.type, (info.world_size,))
        for layer in decoder_layers(model):
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    raise ConfigError(f"unknown distributed strategy {strategy!r}")


@contextlib.contextmanager
def no_grad_sync(model: nn.Module, strategy: str, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce/reduce-scatter for accumulation micro-steps.

    ``enabled`` is True for every micro-batch but the last of an optimiser step.
    """
    if not enabled or strategy == "none":
        yield
    elif strategy == "ddp":
        with model.no_sync():
            yield
    else:  # fsdp2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (in place when distributed); returns it."""
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a world of one)."""
    if info.enabled:
        dist.barrier()


def broadcast_object(obj: object, info: DistInfo) -> object:
    """Send a picklable object from rank 0 to every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
