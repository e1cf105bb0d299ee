"""Random test vectors shared by the estimators (SLQ probes, trace sketches, Lanczos starts)."""

from __future__ import annotations

import torch

__all__ = ["rademacher"]


def rademacher(dim: int, count: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(dim, count)`` float64 ±1 entries from a CPU generator seeded with ``seed``.

    Drawn row-major as ``(count, dim)`` and transposed, so column ``i`` does not depend on
    ``count``; drawn on the CPU so results are identical on every device and rank.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    bits = torch.randint(0, 2, (count, dim), generator=gen, dtype=torch.int64)
    return (2.0 * bits.to(torch.float64) - 1.0).T.contiguous().to(device)
