"""``R(s)``, the magnitude curve: the distance from the trained weights ``w*`` to their global
one-shot magnitude pruning at sparsity ``s`` (Zhang et al., NeurIPS 2024, §3; THEORY §1)::

    R(s) = sqrt( sum of the ⌈sD⌉ smallest w_i² )      (exact, from the sorted weights)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import nn

from .._checks import preserve_model
from ..params import ParamSelection, effective_values, pruned_count, select_parameters

__all__ = ["MagnitudeCurve", "magnitude_curve", "weights_tensor"]

_CHUNK = 1 << 22  # elements per float64 cumsum chunk


def weights_tensor(weights: Any, params: ParamSelection = None) -> torch.Tensor:
    """Flat detached view (tensor/array) or copy (model: the concatenation) of the weights."""
    if isinstance(weights, nn.Module):
        names = select_parameters(weights, params)
        values = effective_values(weights, names)  # torch.nn.utils.prune: weight_orig * mask
        tensors = [values[n].reshape(-1) for n in names]
        device = tensors[0].device
        dtype = tensors[0].dtype
        for t in tensors[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        flat = torch.cat([t.to(device=device, dtype=dtype) for t in tensors])
    else:
        if params is not None:
            raise ValueError("params is only meaningful when weights is an nn.Module")
        if isinstance(weights, np.ndarray):
            if weights.dtype == object or not np.issubdtype(weights.dtype, np.number):
                raise TypeError(f"weights must be a real numeric array, got dtype {weights.dtype}")
            flat = torch.from_numpy(np.ascontiguousarray(weights)).reshape(-1)
        elif isinstance(weights, torch.Tensor):
            flat = weights.detach().reshape(-1)
        else:
            raise TypeError(
                "weights must be a torch.Tensor, a numpy array or an nn.Module, got "
                f"{type(weights).__name__}"
            )
        if flat.is_complex() or flat.dtype == torch.bool:
            raise TypeError(f"weights must be real numbers, got dtype {flat.dtype}")
        if not flat.is_floating_point():
            flat = flat.to(torch.float64)
    if flat.numel() == 0:
        raise ValueError("weights must be non-empty, got 0 entries")
    if not bool(torch.isfinite(flat).all()):
        raise ValueError("weights must be finite, got NaN or inf entries")
    return flat


class MagnitudeCurve:
    """``R(s)``: distance from ``w*`` to its global one-shot magnitude pruning at sparsity ``s``::

        R(s) = sqrt( Σ_{i ≤ k} w_(i)² ),   k = ⌈sD⌉ (``params.pruned_count``), |w_(1)| ≤ |w_(2)| ≤ …

    Built once: ``|w|`` is sorted in the weights' dtype on their device, then squared (exactly:
    the square of a float32 is a float64) and summed cumulatively in float64, chunk by chunk.
    Memory: one copy of ``|w|`` in the weights' dtype (sorted in place with NumPy on the CPU;
    ``torch.sort`` on other devices, which also allocates int64 indices), freed after unless
    ``keep_sorted``, plus the float64 cumulative sums, ``8(D+1)`` bytes (0.8 GB for 10^8
    weights). Every later ``R(s)`` is one index into the cumulative sums.
    """

    def __init__(self, weights: Any, params: ParamSelection = None, keep_sorted: bool = False):
        flat = weights_tensor(weights, params)
        self.dim = int(flat.numel())
        self.device = flat.device
        sorted_abs = flat.abs_() if isinstance(weights, nn.Module) else flat.abs()  # a copy
        if sorted_abs.device.type == "cpu" and sorted_abs.dtype in (
            torch.float16, torch.float32, torch.float64
        ):
            sorted_abs.numpy().sort()  # in place, no index array
        else:
            sorted_abs = torch.sort(sorted_abs).values
        del flat
        cum = torch.empty(self.dim + 1, dtype=torch.float64, device=self.device)
        cum[0] = 0.0
        carry = torch.zeros((), dtype=torch.float64, device=self.device)
        for start in range(0, self.dim, _CHUNK):
            stop = min(self.dim, start + _CHUNK)
            part = sorted_abs[start:stop].to(torch.float64)
            part = torch.cumsum(part * part, dim=0)
            part += carry
            cum[start + 1 : stop + 1] = part
            carry = part[-1]
        self.cumulative = cum
        self._cum_np = cum.numpy() if cum.device.type == "cpu" else None
        self.sorted_abs = sorted_abs if keep_sorted else None

    # -- R at a number of pruned weights / at a sparsity ----------------------------------
    def radius_at_count(self, k: Any) -> Any:
        """``sqrt`` of the sum of the ``k`` smallest squares (``k`` an int or an int array)."""
        if isinstance(k, numbers.Integral):
            if self._cum_np is not None:
                return math.sqrt(self._cum_np[int(k)])
            return math.sqrt(float(self.cumulative[int(k)].item()))
        k = np.asarray(k, dtype=np.int64)
        if self._cum_np is not None:
            return np.sqrt(self._cum_np[k])
        idx = torch.as_tensor(k, device=self.device)
        return np.sqrt(self.cumulative[idx].cpu().numpy())

    def count(self, sparsity: float) -> int:
        """Number of weights pruned at ``sparsity`` (the shared rule ``params.pruned_count``)."""
        return pruned_count(sparsity, self.dim)

    def radius(self, sparsity: Any) -> Any:
        """``R(s)`` for a sparsity in [0, 1] (a number, or an array of them)."""
        if np.ndim(sparsity) == 0:
            return self.radius_at_count(self.count(float(sparsity)))
        counts = np.array([self.count(float(s)) for s in np.asarray(sparsity).reshape(-1)])
        return self.radius_at_count(counts).reshape(np.shape(sparsity))

    def sparsity_at_radius(self, R: Any) -> Any:
        """The magnitude curve read the other way: the largest ``k/D`` with ``R_k ≤ R``."""
        R_arr = np.asarray(R, dtype=np.float64)
        cum = self._cum_np if self._cum_np is not None else self.cumulative.cpu().numpy()
        k = np.searchsorted(cum, R_arr**2, side="right") - 1
        out = np.clip(k, 0, self.dim) / self.dim
        return float(out) if out.ndim == 0 else out

    @property
    def norm(self) -> float:
        """``‖w*‖ = R(1)``."""
        return self.radius_at_count(self.dim)

    def __repr__(self) -> str:
        return f"MagnitudeCurve(dim={self.dim}, norm={self.norm:.6g})"


def magnitude_curve(
    weights: Any, params: ParamSelection = None, keep_sorted: bool = False
) -> MagnitudeCurve:
    """:class:`MagnitudeCurve` of ``weights``; a model comes back unchanged (its weights are read
    under ``preserve_model`` and ``torch.no_grad``)."""
    if isinstance(weights, nn.Module):
        with preserve_model(weights), torch.no_grad():
            return MagnitudeCurve(weights, params=params, keep_sorted=keep_sorted)
    return MagnitudeCurve(weights, params=params, keep_sorted=keep_sorted)
