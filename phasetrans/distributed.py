"""Data-parallel helpers over ``torch.distributed`` (PyTorch's own engine: gloo on CPU, NCCL on GPU).

Each rank passes its shard of the data to :class:`~phasetrans.HessianOperator`; batch sums and
sample counts are all-reduced, so ``H @ v`` is the whole-data product on every rank, and the
estimators (which draw their probes from a seeded CPU generator) give identical results on every
rank. Launch with ``torchrun --nproc_per_node=N script.py`` (see ``examples/distributed_slq.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._checks import check_int

__all__ = [
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "all_reduce_sum",
    "shard_range",
    "shard",
    "all_gather_list",
    "broadcast_object",
    "run_on_main_process",
    "check_ranks_agree",
]


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group is initialised."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def get_rank() -> int:
    """This process's rank (0 when not distributed)."""
    return torch.distributed.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 (and when not distributed): the only rank that writes files."""
    return get_rank() == 0


def all_reduce_sum(values: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """Sum a tensor (or numbers) over all ranks, in float64; a no-op copy when not distributed."""
    tensor = torch.as_tensor(values, dtype=torch.float64)
    if device is not None:
        tensor = tensor.to(device)
    tensor = tensor.clone()
    if is_distributed():
        torch.distributed.all_reduce(tensor)
    return tensor


def shard_range(num_samples: int, rank: int | None = None, world_size: int | None = None) -> range:
    """Indices of this rank's contiguous shard of ``num_samples`` (uneven shards allowed: the first
    ``num_samples % world_size`` ranks get one more sample)."""
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    world_size = get_world_size() if world_size is None else check_int(world_size, "world_size", minimum=1)
    rank = get_rank() if rank is None else check_int(rank, "rank", minimum=0, maximum=world_size - 1)
    if world_size > num_samples:
        raise ValueError(f"world_size={world_size} exceeds num_samples={num_samples}: some shard would be empty")
    sizes = [len(a) for a in np.array_split(np.arange(num_samples), world_size)]
    start = int(sum(sizes[:rank]))
    return range(start, start + sizes[rank])


def shard(tensors: Any, rank: int | None = None, world_size: int | None = None) -> Any:
    """This rank's contiguous shard of a tensor or a tuple of tensors sharing the first dimension."""
    single = isinstance(tensors, torch.Tensor)
    items = (tensors,) if single else tuple(tensors)
    if not items or not all(isinstance(t, torch.Tensor) for t in items):
        raise TypeError("tensors must be a tensor or a tuple of tensors")
    n = items[0].shape[0]
    if any(t.shape[0] != n for t in items):
        raise ValueError("tensors must share their first dimension")
    r = shard_range(n, rank, world_size)
    out = tuple(t[r.start : r.stop] for t in items)
    return out[0] if single else out


def all_gather_list(values: list) -> list:
    """Concatenate a per-rank Python list over all ranks, in rank order (the list itself when
    not distributed). For small metadata such as per-batch losses."""
    values = list(values)
    if not is_distributed():
        return values
    gathered: list = [None] * get_world_size()
    torch.distributed.all_gather_object(gathered, values)
    return [v for part in gathered for v in part]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself when not distributed)."""
    if not is_distributed():
        return obj
    box = [obj if get_rank() == src else None]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def run_on_main_process(fn: Any, errors: tuple[type[BaseException], ...] = (OSError, ValueError, TypeError)) -> Any:
    """Call ``fn()`` on rank 0 only and return its result on every rank (file reads that every
    rank needs, such as a checkpoint or the records of a resumed sweep). An error of the given
    types raised there is raised on every rank, so that no rank waits forever in a collective."""
    result, error = None, None
    if is_main_process():
        try:
            result = fn()
        except errors as exc:
            error = exc
    result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result


def check_ranks_agree(values: dict[str, Any], where: str) -> None:
    """``ValueError`` on every rank when the ranks' ``values`` differ (e.g. the estimator's
    settings and a fingerprint of the weights): data-parallel products average whatever each
    rank computes, so ranks that disagree would silently give a mixture. One
    ``all_gather_object`` of the small dict; a no-op when not distributed."""
    if not is_distributed():
        return
    gathered: list = [None] * get_world_size()
    torch.distributed.all_gather_object(gathered, dict(values))
    keys = sorted({k for g in gathered for k in g})
    diff = [k for k in keys if any(g.get(k) != gathered[0].get(k) for g in gathered)]
    if diff:
        detail = "; ".join(f"{k}: " + ", ".join(f"rank {r} {_short(g.get(k))}"
                                                for r, g in enumerate(gathered)) for k in diff)
        raise ValueError(
            f"{where}: the ranks of the data-parallel run disagree ({detail}); every rank must "
            f"pass the same model weights and the same arguments (only the data shard differs)"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."
