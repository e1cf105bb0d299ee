"""Random test vectors shared by the estimators (SLQ probes, trace sketches, Lanczos starts)."""

from __future__ import annotations

import torch

from .memory import check_fits

__all__ = ["rademacher"]


def rademacher(dim: int, count: int, seed: int, device: torch.device | str = "cpu",
               name: str = "num_probes") -> torch.Tensor:
    """``(dim, count)`` float64 ±1 entries from a CPU generator seeded with ``seed``.

    Drawn row-major as ``(count, dim)`` and transposed, so column ``i`` does not depend on
    ``count``; drawn on the CPU so results are identical on every device and rank. Before
    drawing, ``ValueError`` naming ``name`` (the caller's argument behind ``count``) when the
    vectors and the products the estimators keep beside them (4 float64 copies) cannot fit.
    """
    check_fits(4 * 8 * dim * count, f"{count} random vectors of dim {dim} (and their products)",
               name, device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    bits = torch.randint(0, 2, (count, dim), generator=gen, dtype=torch.int64)
    return (2.0 * bits.to(torch.float64) - 1.0).T.contiguous().to(device)
