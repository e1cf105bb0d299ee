"""Convolutions with a double backward of their own, for Hessian products through kept graphs.

While a batch's gradient graph is built (:class:`ConvRules`, a ``TorchFunctionMode``), every
``F.conv1d/2d/3d`` call (``nn.Conv*d`` included) runs as :class:`_Conv`: the same forward and the
same first backward (``aten.convolution_backward``), so the gradient is bit-for-bit the native
one, but the backward of that backward -- the Hessian product -- is :func:`double_backward`::

    y = conv(x, W) + b,   g_x = convᵀ(g_y, W),   g_W = corr(x, g_y),   g_b = Σ g_y
    ġ_y = conv(ẋ, W) + conv(x, Ẇ) + ḃ          (two convolutions)
    (ġ_x, ġ_W) = (convᵀ(g_y, Ẇ), corr(ẋ, g_y))  (one ``convolution_backward``)

where (ẋ, Ẇ, ḃ) are the cotangents of (g_x, g_W, g_b) (Pearlmutter 1994). The native
``_convolution_double_backward`` computes the same terms, but under ``vmap`` (several columns at
once) it has no batching rule and loops per column; these ops all have one, so the K columns of
``H @ V`` can go through one batched backward. :class:`ColumnsChoice` decides, per pass over the
data: batched when every convolution was taken over (:func:`graph_has_native_conv`) and the
batched copies of the largest activation stay small (measured, see ``COLUMN_BYTES``), else a
loop over the columns (still through :func:`double_backward`, fewer kernels than the native one).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["COLUMN_BYTES", "ColumnsChoice", "ConvRules", "double_backward", "graph_has_native_conv"]

aten = torch.ops.aten

_DIMS = {torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}
_NATIVE_CONV_NODES = frozenset({"ConvolutionBackward0", "ConvolutionBackwardBackward0"})


def _tuple(value, d: int) -> tuple[int, ...] | None:
    if isinstance(value, int):
        return (value,) * d
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
        return tuple(value) * d if len(value) == 1 else tuple(value)
    return None


def _conv_call(func, args, kwargs):
    """``(x, w, b, params)`` of a ``conv{1,2,3}d`` call this module handles, else ``None``
    (string padding, unbatched input, anything unusual: the native op runs)."""
    d = _DIMS[func]
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    defaults = (None, None, None, 1, 0, 1, 1)
    if len(args) > len(names) or any(k not in names for k in kwargs):
        return None
    values = dict(zip(names, defaults))
    values.update(zip(names, args))
    values.update(kwargs)
    x, w, b = values["input"], values["weight"], values["bias"]
    if not (isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor)):
        return None
    if x.dim() != d + 2 or w.dim() != d + 2 or not (b is None or isinstance(b, torch.Tensor)):
        return None
    stride, padding, dilation = (_tuple(values[k], d) for k in ("stride", "padding", "dilation"))
    groups = values["groups"]
    if None in (stride, padding, dilation) or not isinstance(groups, int):
        return None
    if not (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)):
        return None
    return x, w, b, (stride, padding, dilation, groups)


class ConvRules(TorchFunctionMode):
    """Inside this mode, ``conv1d/2d/3d`` with numeric padding and a batched input run as
    :class:`_Conv` (the rest of torch unchanged); ``largest_bytes`` records the largest input or
    output of those calls."""

    def __init__(self):
        super().__init__()
        self.largest_bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _DIMS:
            call = _conv_call(func, args, kwargs)
            if call is not None:
                x, w, b, params = call
                y = _Conv.apply(x, w, b, params)
                sizes = (t.numel() * t.element_size() for t in (x, y))
                self.largest_bytes = max(self.largest_bytes, *sizes)
                return y
        return func(*args, **kwargs)


def _convolution(x, w, b, params):
    stride, padding, dilation, groups = params
    zeros = (0,) * len(stride)
    return aten.convolution(x, w, b, stride, padding, dilation, False, zeros, groups)


def _convolution_backward(gy, x, w, bias_sizes, params, mask):
    stride, padding, dilation, groups = params
    zeros = (0,) * len(stride)
    return aten.convolution_backward(
        gy, x, w, bias_sizes, stride, padding, dilation, False, zeros, groups, list(mask)
    )


class _Conv(torch.autograd.Function):
    """``aten.convolution`` whose first backward is :class:`_ConvBackward` (differentiable
    with :func:`double_backward`) when a graph is being made, else the native backward op."""

    @staticmethod
    def forward(x, w, b, params):
        return _convolution(x, w, b, params)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, b, params = inputs
        ctx.save_for_backward(x, w)
        ctx.params = params
        ctx.bias_sizes = None if b is None else list(b.shape)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, gy):
        if gy is None:
            return None, None, None, None
        x, w = ctx.saved_tensors
        mask = (*ctx.needs_input_grad[:2], ctx.bias_sizes is not None and ctx.needs_input_grad[2])
        if torch.is_grad_enabled():  # create_graph: this backward is differentiated again
            gx, gw, gb = _ConvBackward.apply(gy, x, w, ctx.bias_sizes, ctx.params, mask)
        else:
            gx, gw, gb = _convolution_backward(gy, x, w, ctx.bias_sizes, ctx.params, mask)
        return gx, gw, gb, None


class _ConvBackward(torch.autograd.Function):
    """``aten.convolution_backward`` (the native first backward, same values), differentiated
    by :func:`double_backward`."""

    @staticmethod
    def forward(gy, x, w, bias_sizes, params, mask):
        gx, gw, gb = _convolution_backward(gy, x, w, bias_sizes, params, mask)
        return (gx if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None)

    @staticmethod
    def setup_context(ctx, inputs, output):
        gy, x, w, _, params, _ = inputs
        ctx.save_for_backward(gy, x, w)
        ctx.params = params
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, ggx, ggw, ggb):
        gy, x, w = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:3])
        d_gy, dx, dw = double_backward(gy, x, w, ggx, ggw, ggb, ctx.params, needs)
        return d_gy, dx, dw, None, None, None


def double_backward(gy, x, w, ggx, ggw, ggb, params, needs: Sequence[bool]):
    """The cotangents ``(ġ_y, ġ_x, ġ_W)`` of a convolution's first backward from those of its
    outputs ``(ẋ, Ẇ, ḃ)`` (any may be ``None``); ``needs`` says which are wanted (``None``
    otherwise). Plain differentiable ops, each with a ``vmap`` batching rule."""
    d_gy = dx = dw = None
    if needs[0]:
        if ggx is not None:  # ḃ is added inside the convolution (one pass less)
            d_gy, ggb = _convolution(ggx, w, ggb, params), None
        if ggw is not None:
            term = _convolution(x, ggw, ggb, params)
            d_gy, ggb = (term if d_gy is None else d_gy + term), None
        if ggb is not None:
            d_gy = ggb.reshape(1, -1, *([1] * (gy.dim() - 2))).expand(gy.shape)
    mask = (bool(needs[1]) and ggw is not None, bool(needs[2]) and ggx is not None, False)
    if mask[0] or mask[1]:
        inp = ggx if ggx is not None else x
        wt = ggw if ggw is not None else w
        gx, gw, _ = _convolution_backward(gy, inp, wt, None, params, mask)
        dx, dw = (gx if mask[0] else None), (gw if mask[1] else None)
    return d_gy, dx, dw


def graph_has_native_conv(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether the autograd graph behind ``tensors`` holds a native convolution node (one
    :class:`ConvRules` did not take over: a transposed convolution, string padding, ...)."""
    seen: set = set()
    stack = [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.name() in _NATIVE_CONV_NODES:
            return True
        stack.extend(n for n, _ in node.next_functions if n is not None and n not in seen)
    return False


# The most bytes a batched backward's copy of a graph's largest convolution input or output may
# hold (K columns at once make each such tensor K times larger), and the fewest columns worth a
# batched backward. Measured on the 2-core CPU, 1 thread, the small CNN of bench/hvp_methods.py
# (conv 16-32 on 8x8 digits; process CPU time, loaded machine), gradient passes per column at
# K = 4 / 8 / 16, native double backward (before) | loop over columns | batched by this rule:
#   batches of  16 (128 KiB a column, c = 8):  2.16 / 1.96 / 2.09 | 1.84 / 1.77 / 1.89 | 1.21 / 0.96 / 0.97
#   batches of  32 (256 KiB, c = 8):           1.95 / 1.83 / 2.08 | 1.88 / 1.87 / 1.94 | 1.37 / 1.32 / 1.28
#   batches of  64 (512 KiB, c = 4):           2.13 / 2.06 / 2.11 | 2.01 / 2.05 / 1.92 | 1.84 / 1.90 / 1.81
#   batches of 128 (1 MiB, c = 2 rejected):    2.01 / 2.13 / 2.11 | 1.85 / 1.76 / 1.86 | 2.04 / 1.97 / 1.96
#   batches of 256 (2 MiB, c = 8 rejected):    K = 8: loop 1.95, batched 2.83.
# Past about 2 MiB the batched transients leave the caches and glibc returns them to the system
# between batches, so they are faulted in afresh (200k minor page faults per product at batch
# 256, c = 8, against a few for the loop).
MIN_COLUMNS = 4
COLUMN_BYTES = 2 << 20


class ColumnsChoice:
    """How the columns of ``H @ V`` go through the gradient graphs of one pass over the data
    (:func:`~._graph_cache.apply_graph`), updated with each graph built (:meth:`update`):
    ``("vmap", c)``, batched backwards of at most ``c = COLUMN_BYTES // largest`` columns, where
    ``largest`` is the largest convolution input or output so far (:attr:`ConvRules.largest_bytes`),
    when ``c >= MIN_COLUMNS`` and every convolution of every graph is :class:`_Conv`; else
    ``(False, None)``: a loop over the columns."""

    def __init__(self):
        self.largest_bytes = 0
        self.native = False

    def update(self, gs: Sequence[torch.Tensor], largest_bytes: int) -> tuple[str | bool, int | None]:
        self.largest_bytes = max(self.largest_bytes, int(largest_bytes))
        columns = COLUMN_BYTES // max(self.largest_bytes, 1)
        if columns < MIN_COLUMNS:
            return False, None
        self.native = self.native or graph_has_native_conv(gs)
        return (False, None) if self.native else ("vmap", columns)
