"""The layers of :mod:`._pearlmutter`'s written-out R-operator as maps: each kind's forward,
its derivatives (activations) and its adjoints (affine layers: ``A_W`` and ``A_Wᵀ`` and the
weight gradient ``∂_W⟨grad, A_W(z)⟩``; pooling: ``P`` and ``Pᵀ``), as torch's own kernels define
them, so that the products agree with autograd's to rounding. Every function takes the module
whose settings (stride, padding, slope, ...) it applies."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ACTIVATIONS", "POOLS", "MAXPOOLS", "CONVS", "activation", "derivatives", "affine",
           "weight_grad", "input_grad", "max_pool", "gather_maxima", "scatter_maxima", "pool",
           "pool_adjoint", "conv_args", "pool_matrix", "NORMS", "per_channel", "norm_forward",
           "norm_r_forward", "norm_r_backward"]

#: activations with their first and second derivatives (exact types)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Softplus)
#: parameter-free linear layers (exact types)
POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten,
         nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: batch norms in eval mode (running statistics): ``y = γ x̂ + β``, ``x̂ = (x − μ) / sqrt(σ² + ε)``
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def activation(m: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """``σ(a)`` of the activation module ``m``, never in place (``inplace=True`` modules would
    overwrite ``a``, which may be the user's batch)."""
    if type(m) is nn.ReLU:
        return F.relu(a)
    if type(m) is nn.LeakyReLU:
        return F.leaky_relu(a, m.negative_slope)
    if type(m) is nn.Tanh:
        return torch.tanh(a)
    if type(m) is nn.Sigmoid:
        return torch.sigmoid(a)
    return F.softplus(a, m.beta, m.threshold)


def derivatives(m: nn.Module, a: torch.Tensor, out: torch.Tensor):
    """``(σ'(a), σ''(a) or None)`` of the activation ``m`` at ``a`` (``out = σ(a)``), as torch's
    own backward and double backward define them (ReLU and LeakyReLU: the derivative at 0 is
    that of the negative side; Softplus: linear past ``threshold``)."""
    if type(m) is nn.ReLU:
        return (a > 0).to(a.dtype), None
    if type(m) is nn.LeakyReLU:
        return torch.full_like(a, m.negative_slope).masked_fill_(a > 0, 1.0), None
    if type(m) is nn.Tanh:
        d1 = 1 - out * out
        return d1, -2 * out * d1
    if type(m) is nn.Sigmoid:
        d1 = out * (1 - out)
        return d1, d1 * (1 - 2 * out)
    # Softplus
    ba = a * m.beta
    s = torch.sigmoid(ba)
    linear = ba > m.threshold
    return s.masked_fill(linear, 1.0), (m.beta * s * (1 - s)).masked_fill_(linear, 0.0)


# -- affine layers: A_W(z) and its adjoints ---------------------------------------------------

def conv_args(m: nn.Module) -> tuple:
    return m.stride, m.padding, m.dilation, False, [0] * len(m.stride), 1


def affine(m: nn.Module, z: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``A_W(z) + b``: the layer's forward with weight ``W`` and bias ``b``."""
    if type(m) is nn.Linear:
        return F.linear(z, W, b)
    return torch.convolution(z, W, b, *conv_args(m))


def weight_grad(m: nn.Module, grad: torch.Tensor, z: torch.Tensor, like: torch.Tensor,
                 bias: bool = False):
    """``∂_W ⟨grad, A_W(z)⟩`` for a weight shaped as ``like`` (``grad`` and ``z`` of any batch),
    and with ``bias`` the bias gradient too (a convolution's in the same kernel call)."""
    if type(m) is nn.Linear:
        gw = grad.reshape(-1, like.shape[0]).T @ z.reshape(-1, like.shape[1])
        return (gw, grad.reshape(-1, like.shape[0]).sum(0)) if bias else gw
    _, gw, gb = torch.ops.aten.convolution_backward(
        grad, z, like, [like.shape[0]] if bias else None, *conv_args(m), [False, True, bias])
    return (gw, gb) if bias else gw


def input_grad(m: nn.Module, grad: torch.Tensor, like: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``A_Wᵀ(grad)``, shaped as ``like`` (an input of the layer)."""
    if type(m) is nn.Linear:
        return grad @ W
    return torch.ops.aten.convolution_backward(
        grad, like, W, None, *conv_args(m), [True, False, False])[0]


def pool_kernel(m: nn.Module, shape) -> list[int] | None:
    """The kernel (= stride) of the plain average pooling that an adaptive one is on inputs of
    ``shape`` (``(N, C, *spatial)``) when every output size divides its input size, else
    ``None`` (the plain kernels are about twice as fast on CPU)."""
    spatial = list(shape[2:])
    out = m.output_size
    out = [out] * len(spatial) if isinstance(out, int) else list(out)
    out = [s if o is None else o for o, s in zip(out, spatial)]
    if any(o <= 0 or s % o for o, s in zip(out, spatial)):
        return None
    return [s // o for o, s in zip(out, spatial)]


def max_pool(m: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The max pooling ``m`` of ``z`` and the flat index of each window's maximum in its
    channel (torch's: the first maximum of a window)."""
    pool = {nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d, nn.MaxPool3d: F.max_pool3d}[type(m)]
    return pool(z, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode,
                return_indices=True)


def gather_maxima(R: torch.Tensor, idx: torch.Tensor, B: int) -> torch.Tensor:
    """A max pooling applied to the folded ``R`` ``(B·K, C, ...)``: the entries at the dense
    input's window maxima ``idx`` ``(B, C, ...)``."""
    C = idx.shape[1]
    K = R.shape[0] // B
    flat = idx.reshape(B, 1, C, -1).expand(B, K, C, -1)
    return R.reshape(B, K, C, -1).gather(3, flat).view(B * K, C, *idx.shape[2:])


def scatter_maxima(grad: torch.Tensor, idx: torch.Tensor, shape, B: int) -> torch.Tensor:
    """The adjoint of :func:`gather_maxima`: ``grad`` added back at the window maxima, into zeros of
    ``shape`` (folded)."""
    C = idx.shape[1]
    K = grad.shape[0] // B
    flat = idx.reshape(B, 1, C, -1).expand(B, K, C, -1)
    out = grad.new_zeros(B, K, C, math.prod(shape[2:]))
    return out.scatter_add_(3, flat, grad.reshape(B, K, C, -1)).view(shape)


def pool(m: nn.Module, z: torch.Tensor) -> torch.Tensor:
    if type(m) is nn.Flatten:
        return torch.flatten(z, 1)
    k = pool_kernel(m, z.shape)
    if k is None:
        return m(z)
    if len(k) == 1:
        return F.avg_pool2d(z.unsqueeze(-2), [1, *k]).squeeze(-2)
    return (F.avg_pool2d if len(k) == 2 else F.avg_pool3d)(z, k)


def pool_adjoint(m: nn.Module, grad: torch.Tensor, shape) -> torch.Tensor:
    """``Pᵀ grad`` for the pooling or flatten ``m`` whose input has ``shape``."""
    if type(m) is nn.Flatten:
        return grad.reshape(shape)
    k = pool_kernel(m, shape)
    if len(shape) == 3:  # 1-d: the 2-d kernels on a unit height
        grad, shape = grad.unsqueeze(-2), (*shape[:2], 1, shape[2])
        k = None if k is None else [1, *k]
    like = grad.new_empty(shape)  # the kernels read only its shape
    if k is not None:
        kernel = torch.ops.aten.avg_pool2d_backward if len(k) == 2 else torch.ops.aten.avg_pool3d_backward
        out = kernel(grad, like, k, k, [0] * len(k), False, True, None)
    elif len(shape) == 4:
        out = torch.ops.aten._adaptive_avg_pool2d_backward(grad, like)
    else:
        out = torch.ops.aten._adaptive_avg_pool3d_backward(grad, like)
    return out.squeeze(-2) if type(m) is nn.AdaptiveAvgPool1d else out


#: output positions up to which an average pooling's R-passes are a matmul by its matrix
#: (:func:`pool_matrix`): 4-7x faster than the pooling kernels on CPU (8x8 -> 2x2, 512 x 32
#: maps), and the matrix (input x output positions) stays small
POOL_MATRIX_OUTPUTS = 16


def pool_matrix(m: nn.Module, shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """The average pooling ``m`` on inputs of per-sample ``shape`` ``(C, *spatial)`` as a matrix
    ``P`` (input positions × output positions, the same for every channel): ``pool(z)`` is
    ``z.reshape(-1, S_in) @ P`` and ``Pᵀ`` its adjoint; ``None`` for a flatten or max pooling,
    or past :data:`POOL_MATRIX_OUTPUTS` output positions."""
    if type(m) is nn.Flatten or type(m) in MAXPOOLS:
        return None
    spatial = tuple(shape[1:])
    n = math.prod(spatial)
    eye = torch.eye(n, dtype=dtype, device=device).view(n, 1, *spatial)
    P = pool(m, eye).reshape(n, -1)
    return P if P.shape[1] <= POOL_MATRIX_OUTPUTS else None


def per_channel(c: torch.Tensor, dims: int, folded: int = 0) -> torch.Tensor:
    """A per-channel vector ``c`` shaped to broadcast over a ``dims``-dimensional
    ``(N, C, ...)`` tensor (with ``folded`` extra leading dimensions: ``(N, K, C, ...)``)."""
    return c.view(*([1] * (1 + folded)), -1, *([1] * (dims - 2)))


def norm_forward(m: nn.Module, z: torch.Tensor, gamma, beta, mean, var):
    """An eval-mode batch norm of ``z`` and what its R-passes keep: ``(x̂, 1/σ, γ/σ)``."""
    invstd = torch.rsqrt(var + m.eps)
    xhat = (z - per_channel(mean, z.dim())) * per_channel(invstd, z.dim())
    scale = invstd if gamma is None else gamma * invstd
    out = xhat if gamma is None else xhat * per_channel(gamma, z.dim())
    if beta is not None:
        out = out + per_channel(beta, z.dim())
    return out, (xhat, invstd, scale)


def norm_r_forward(values, Rz, Vg, Vb, B: int, K: int) -> torch.Tensor:
    """``R{y} = (γ/σ) R{x} + V_γ x̂ + V_β``, folded ``(B·K, C, ...)`` (``Rz`` folded or ``None``;
    ``V_γ``, ``V_β`` ``(K, C)`` or ``None``)."""
    xhat, _, scale = values
    d = xhat.dim()
    shape = (B * K, *xhat.shape[1:])
    r = None if Rz is None else Rz * per_channel(scale, d)
    if Vg is not None:
        t = (xhat.unsqueeze(1) * Vg.view(1, K, -1, *([1] * (d - 2)))).reshape(shape)
        r = t if r is None else r.add_(t)
    if Vb is not None:
        t = Vb.view(1, K, -1, *([1] * (d - 2)))
        r = t.expand(B, K, *xhat.shape[1:]).reshape(shape) if r is None else (
            r.reshape(B, K, *xhat.shape[1:]).add_(t).reshape(shape))
    return r


def norm_r_backward(values, Rg, g, Rz_in, Vg, Vb, B: int, K: int, below: bool):
    """``(H v)_γ = Σ R{g} x̂ + g R{x}/σ``, ``(H v)_β = Σ R{g}`` (``(K, C)``, ``None`` when not
    selected) and, when ``below``, ``R{g_in} = (γ/σ) R{g} + g V_γ / σ`` (folded; else ``None``)."""
    xhat, invstd, scale = values
    C = xhat.shape[1]
    Rg4 = Rg.reshape(B, K, C, -1)
    hv_g = hv_b = Rg_in = None
    if Vg is not None:
        hv_g = (Rg4 * xhat.reshape(B, 1, C, -1)).sum((0, 3))
        if Rz_in is not None:
            hv_g += (g.reshape(B, 1, C, -1) * Rz_in.reshape(B, K, C, -1)).sum((0, 3)) * invstd
    if Vb is not None:
        hv_b = Rg4.sum((0, 3))
    if below:
        Rg_in = Rg4 * scale.view(1, 1, C, 1)
        if Vg is not None:
            Rg_in += g.reshape(B, 1, C, -1) * (Vg * invstd).view(1, K, C, 1)
        Rg_in = Rg_in.view(Rg.shape)
    return hv_g, hv_b, Rg_in
