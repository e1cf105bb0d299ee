"""Pearlmutter's R-operator written out for feed-forward stacks: the exact batch Hessian product
``H_b V`` of ``K`` columns for an ``nn.Sequential`` of linear and convolution layers, eval-mode
batch norms, elementwise activations, average and max pooling and ``nn.Flatten``, under
cross-entropy or mean-squared error, without an autograd graph.

Reference: Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6 (1994),
§4 (the R-operator of a feed-forward network); THEORY §6. With ``z_0`` the inputs, an affine layer
``z' = A_W(z) + b`` (a matmul or a convolution, linear in ``W`` and in ``z``), an activation
``z' = σ(a)``, a parameter-free linear layer ``z' = P z`` (pooling, flatten), ``g = ∂L_b/∂z'``
the gradient of every layer's output, and ``R{·}`` the directional derivative along
``v = (V_W, V_b)``::

    forward   R{z'} = A_W(R{z}) + A_{V_W}(z) + V_b        (affine)
              R{z'} = σ'(a) ⊙ R{a},   R{z'} = P R{z}      (activation, pooling)
    loss      R{g_n} = (diag(p) − p pᵀ) R{z_n} / B        (cross-entropy, p = softmax(z_n))
              R{g_n} = 2 R{z_n} / numel(z_n)              (mean-squared error)
    backward  R{g_in} = A_Wᵀ(R{g}) + A_{V_W}ᵀ(g)          (affine)
              R{g_in} = σ'(a) ⊙ R{g} + σ''(a) ⊙ g ⊙ R{a}, R{g_in} = Pᵀ R{g}
    product   (H_b v)_W = ∂_W⟨R{g}, A_W(z)⟩ + ∂_W⟨g, A_W(R{z})⟩,   (H_b v)_b = Σ R{g}

The ``K`` columns share every operation: an R-quantity is laid out ``(B, K, features...)``, which
is at once a batch of ``B·K`` samples for ``A_W`` and ``Pᵀ`` and a ``K``-fold wider layer for
``A_{V_W}`` (the ``K`` columns of ``V_W`` stacked as output or input channels), so each term is
one matmul or convolution with no copy, six per affine layer and column: the minimum of
Pearlmutter's product. The autograd engine's double backward of the same product copies its
``K``-fold operands around every matmul to fold the batch and adds gradients in the engine
(docs/BENCHMARKS.md §0).

:func:`sequential_plan` says whether a model and loss are of this form (anything else, or a
batch :func:`record` cannot take, goes through autograd); :func:`record` keeps one batch's
forward and backward values (:class:`Tape`); :func:`tape_product` adds ``size · H_b V``. What
each kind of layer does (``A_W``, ``A_Wᵀ``, ``σ'``, ``σ''``, ``P``, ``Pᵀ``) is in :mod:`._layer_maps`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._layer_maps import (
    ACTIVATIONS,
    CONVS,
    MAXPOOLS,
    NORMS,
    POOLS,
    activation,
    affine,
    conv_args,
    derivatives,
    gather_maxima,
    input_grad,
    max_pool,
    norm_forward,
    norm_r_backward,
    norm_r_forward,
    per_channel,
    pool,
    pool_adjoint,
    pool_matrix,
    scatter_maxima,
    weight_grad,
)

__all__ = ["Plan", "Tape", "sequential_plan", "record", "columns", "tape_product", "ROW_BYTES",
           "DEVICE_ROW_BYTES"]

#: the identity in the operator's eval-mode passes: skipped
_SKIPPED = (nn.Identity, nn.Dropout)


@dataclass(frozen=True)
class Plan:
    """A model and loss of the written-out form: ``layers`` in forward order, each
    ``("affine", module, weight_name, bias_name | None)``, ``("act", module)`` or
    ``("pool", module)``; ``loss`` is ``"ce"`` or ``"mse"``; ``input_dims`` and
    ``in_features`` what the batch's inputs must be (their number of dimensions and size of
    dimension 1); ``index`` maps a selected parameter's name to its position in the operator's
    blocks; ``lowest`` is the first layer with a selected parameter (the R-passes start there)."""

    layers: tuple
    loss: str
    first_weight: str
    input_dims: int
    in_features: int
    index: dict
    lowest: int


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or getattr(m, "_backward_pre_hooks", None) or "forward" in m.__dict__
                or getattr(m, "parametrizations", None))


def _global_hooks() -> bool:
    mod = nn.modules.module
    return any(getattr(mod, name, None) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks", "_global_forward_hooks_always_called"))


def _loss_kind(loss_fn) -> str | None:
    if loss_fn is F.cross_entropy:
        return "ce"
    if loss_fn is F.mse_loss:
        return "mse"
    if type(loss_fn) is nn.CrossEntropyLoss and not _hooked(loss_fn):
        plain = (loss_fn.reduction == "mean" and loss_fn.weight is None
                 and loss_fn.label_smoothing == 0.0 and loss_fn.ignore_index < 0)
        return "ce" if plain else None
    if type(loss_fn) is nn.MSELoss and not _hooked(loss_fn) and loss_fn.reduction == "mean":
        return "mse"
    return None


def _plain_conv(m: nn.Module) -> bool:
    return (m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str)
            and all(p >= 0 for p in m.padding))


def _plain_pool(m: nn.Module) -> bool:
    if type(m) is nn.Flatten:
        return m.start_dim == 1 and m.end_dim == -1
    return type(m) not in MAXPOOLS or not m.return_indices


def _plain_sequential(m: nn.Module) -> bool:
    """An ``nn.Sequential`` (or a subclass that keeps its ``forward``, e.g. ``pt.models.MLP``,
    ``pt.models.LeNet``) without hooks."""
    return (isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward
            and not _hooked(m))


def _leaves(model: nn.Module, prefix: str = ""):
    """``(name, module)`` of a plain sequential's layers in forward order, nested plain
    sequentials opened."""
    for name, m in model.named_children():
        if _plain_sequential(m):
            yield from _leaves(m, f"{prefix}{name}.")
        else:
            yield prefix + name, m


def sequential_plan(model: nn.Module, loss_fn, param_names: list[str]) -> Plan | None:
    """The :class:`Plan` of ``model`` under ``loss_fn`` with ``param_names`` selected, or
    ``None`` when it is not of the form: an ``nn.Sequential`` (nested ones opened; subclasses
    that keep its ``forward``) of exactly ``nn.Linear``, ``nn.Conv1d/2d/3d`` (one group, zero
    padding given as numbers), :data:`NORMS` with running statistics (the operator's passes run
    them in eval mode; ``batchnorm="train"`` never gets here), :data:`ACTIVATIONS`,
    :data:`POOLS` (``nn.Flatten`` from dimension 1 to the last), ``nn.Identity`` and
    ``nn.Dropout``; no other buffers, no hooks, parametrisations or overridden ``forward``;
    ``loss_fn`` ``nn.CrossEntropyLoss()`` or ``nn.MSELoss()`` (mean, no class weights, no label
    smoothing) or ``F.cross_entropy`` / ``F.mse_loss``; every selected parameter a weight or bias
    of one of the affine layers."""
    loss = _loss_kind(loss_fn)
    if loss is None or not _plain_sequential(model) or _global_hooks():
        return None
    layers, owned, buffers = [], set(), set()
    for name, m in _leaves(model):
        if _hooked(m):
            return None
        if type(m) in NORMS and m.track_running_stats and m.running_mean is not None:
            names = [f"{name}.{k}" if getattr(m, k) is not None else None for k in ("weight", "bias")]
            layers.append(("norm", m, *names, f"{name}.running_mean", f"{name}.running_var"))
            owned.update(n for n in names if n)
            buffers.update(f"{name}.{k}" for k in ("running_mean", "running_var", "num_batches_tracked"))
        elif type(m) is nn.Linear or (type(m) in CONVS and _plain_conv(m)):
            bias = f"{name}.bias" if m.bias is not None else None
            layers.append(("affine", m, f"{name}.weight", bias))
            owned.update(n for n in (f"{name}.weight", bias) if n)
        elif type(m) in ACTIVATIONS:
            layers.append(("act", m))
        elif type(m) in POOLS and _plain_pool(m):
            layers.append(("pool", m))
        elif type(m) not in _SKIPPED:
            return None
    if any(n not in buffers for n, _ in model.named_buffers()):
        return None  # buffers other than the running statistics of eval-mode batch norms
    affine = [layer for layer in layers if layer[0] == "affine"]
    if not affine or not param_names or not set(param_names) <= owned:
        return None
    first = affine[0][1]
    dims, width = (2, first.in_features) if type(first) is nn.Linear else (
        first.weight.dim(), first.in_channels)
    if any(layer[0] in ("pool", "norm") for layer in layers[:layers.index(affine[0])]):
        dims, width = 0, 0  # a pooling, flatten or norm before the first affine layer: any shape
    index = {n: i for i, n in enumerate(param_names)}
    lowest = min(i for i, layer in enumerate(layers)
                 if layer[0] in ("affine", "norm") and (layer[2] in index or layer[3] in index))
    return Plan(tuple(layers), loss, affine[0][2], dims, width, index, lowest)


class Tape:
    """One batch's values for :func:`tape_product`: per layer the affine layers' inputs and
    weights, the activations' ``σ'(a)`` and ``σ''(a) ⊙ g``, the gradient ``g`` of every affine
    layer's output, the softmax (cross-entropy); ``loss`` (a 0-d tensor) and ``nbytes`` (the
    memory it holds beyond the batch and the model)."""

    __slots__ = ("values", "grads", "probs", "size", "numel", "loss", "nbytes", "widest", "device")


def _nbytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def record(plan: Plan, weights: dict, inputs, targets) -> Tape | None:
    """The :class:`Tape` of one batch (no autograd), or ``None`` when the batch is not of the
    form (inputs a tensor of the first layer's dimensions, width and the weights' dtype, giving
    a 2-d output; targets class indices in range (cross-entropy) or a tensor of the outputs'
    shape and dtype (mean-squared error)), so that the caller takes the autograd path and the
    user's loss sees the batch as it is."""
    first = weights[plan.first_weight]
    if not (isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor)
            and inputs.dim() >= 2 and inputs.shape[0] > 0
            and inputs.dtype == first.dtype and inputs.device == first.device):
        return None
    if plan.input_dims and (inputs.dim() != plan.input_dims or inputs.shape[1] != plan.in_features):
        return None
    B = inputs.shape[0]
    tape = Tape()
    values, grads = [], [None] * len(plan.layers)
    z = inputs.contiguous()  # channels-last batches: the R-passes fold views of these
    with torch.no_grad():
        try:
            for layer in plan.layers:
                if layer[0] == "affine":
                    W = weights[layer[2]]
                    values.append((z, W))
                    z = affine(layer[1], z, W, weights[layer[3]] if layer[3] else None).contiguous()
                elif layer[0] == "norm":
                    z, v = norm_forward(layer[1], z, *(weights[n] if n else None for n in layer[2:]))
                    values.append(v)
                elif layer[0] == "act":
                    out = activation(layer[1], z)
                    values.append(list(derivatives(layer[1], z, out)))  # [σ', σ''] -> [σ', σ''⊙g]
                    z = out
                elif type(layer[1]) in MAXPOOLS:
                    shape = z.shape[1:]
                    z, idx = max_pool(layer[1], z)
                    values.append((shape, idx, None, z.shape[2:]))
                else:
                    shape, P = z.shape[1:], pool_matrix(layer[1], z.shape[1:], z.dtype, z.device)
                    z = pool(layer[1], z)
                    values.append((shape, None, P, z.shape[2:]))
        except RuntimeError:  # shapes that do not fit: the autograd path raises the user's error
            return None
        if z.dim() != 2:
            return None
        C = z.shape[1]
        if plan.loss == "ce":
            if targets.dtype != torch.long or targets.shape != (B,) or C < 1:
                return None
            if bool((targets < 0).any()) or bool((targets >= C).any()):
                return None
            tape.loss = F.cross_entropy(z, targets)
            p = torch.softmax(z, 1)
            g = p.clone()
            g[torch.arange(B, device=g.device), targets] -= 1
            g /= B
            tape.probs = p
        else:
            if targets.shape != z.shape or targets.dtype != z.dtype:
                return None
            tape.loss = F.mse_loss(z, targets)
            g = (z - targets) * (2.0 / z.numel())
            tape.probs = None
        tape.numel = z.numel()
        for i in range(len(plan.layers) - 1, plan.lowest - 1, -1):
            kind = plan.layers[i][0]
            if kind == "affine":
                grads[i] = g
                if i > plan.lowest:
                    z_in, W = values[i]
                    g = input_grad(plan.layers[i][1], g, z_in, W)
            elif kind == "norm":
                grads[i] = g
                g = g * per_channel(values[i][2], g.dim())
            elif kind == "act":
                d1, d2 = values[i]
                if d2 is not None:
                    values[i][1] = d2 * g
                g = g * d1
            else:
                shape, idx, _, _ = values[i]
                g = (pool_adjoint(plan.layers[i][1], g, (B, *shape)) if idx is None
                     else scatter_maxima(g, idx, (B, *shape), B))
    nbytes = _nbytes(tape.probs) + sum(_nbytes(t) for t in grads)
    for layer, v in zip(plan.layers, values):
        if layer[0] in ("affine", "norm") and v[0] is not inputs:
            nbytes += _nbytes(v[0])
        elif layer[0] == "act":
            nbytes += _nbytes(v[0]) + _nbytes(v[1])
        else:
            nbytes += _nbytes(v[1])
    tape.values, tape.grads, tape.size, tape.nbytes = values, grads, B, nbytes
    tape.device = inputs.device
    # bytes of one sample's widest activation (an R-quantity is K of them per sample)
    tape.widest = max(_nbytes(g) for g in grads if g is not None) // B
    for layer, v in zip(plan.layers, values):
        if layer[0] in ("affine", "norm"):
            tape.widest = max(tape.widest, _nbytes(v[0]) // B)
    return tape


def columns(plan: Plan, blocks: list) -> list:
    """Per layer, the columns ``V`` of its parameters for one product: ``(V_W with the K
    columns stacked as output rows/channels (K·out, in, ...), V_W stacked as input
    columns/channels (out, K·in, ...), V_b as (K·out,))`` with ``None`` for what is not
    selected, from the operator's per-parameter ``blocks`` ``(K, *shape)`` (one copy of ``V_W``
    per product)."""
    out = []
    for layer in plan.layers:
        if layer[0] == "norm":  # (V_γ, V_β) as (K, C)
            out.append(tuple(blocks[plan.index[n]] if n in plan.index else None for n in layer[2:4]))
            continue
        if layer[0] != "affine":
            out.append(None)
            continue
        VW = VWt = Vb = None
        if layer[2] in plan.index:
            block = blocks[plan.index[layer[2]]]  # (K, out, in, ...)
            K, o, i, *k = block.shape
            VW = block.reshape(K * o, i, *k)
            VWt = block.transpose(0, 1).reshape(o, K * i, *k)
        if layer[3] is not None and layer[3] in plan.index:
            Vb = blocks[plan.index[layer[3]]].reshape(-1)
        out.append((VW, VWt, Vb))
    return out


def _forward_affine(m, z, W, Rz, cols, spatial, B, K):
    """``R{z'}`` of an affine layer with outputs at ``spatial`` positions, ``(B·K, out, ...)``
    (``Rz`` the folded ``R{z}`` or ``None``)."""
    VW, _, Vb = cols
    linear = type(m) is nn.Linear
    r = None
    if VW is not None:
        if linear:
            r = torch.addmm(Vb, z, VW.T) if Vb is not None else z @ VW.T
        else:
            r = torch.convolution(z, VW, Vb, *conv_args(m))
    elif Vb is not None:  # the bias alone, spread over the output positions
        r = Vb.view(1, -1, *[1] * len(spatial)).expand(B, Vb.numel(), *spatial).contiguous()
    r = None if r is None else r.reshape(B * K, W.shape[0], *spatial)
    if Rz is not None:
        if linear and r is not None:
            r.addmm_(Rz, W.T)
        else:
            a = affine(m, Rz, W, None)
            r = a if r is None else r.add_(a)
    return r


@torch.no_grad()
def tape_product(plan: Plan, tape: Tape, cols: list, pieces: list, size: float, K: int) -> None:
    """``size · H_b V`` added to the per-parameter ``pieces`` ``(K, *shape)`` from the batch's
    ``tape`` and the product's ``cols`` (:func:`columns`): the forward, loss and backward
    R-passes of the module docstring, the ``K`` columns in every operation, over slices of the
    batch's samples whose widest R-quantity stays under :data:`ROW_BYTES` (the product is a
    sum over samples)."""
    limit = ROW_BYTES if tape.device.type == "cpu" else DEVICE_ROW_BYTES
    rows = max(1, limit // max(1, K * tape.widest))
    for lo in range(0, tape.size, rows):
        _rows_product(plan, tape, cols, pieces, size, K, lo, min(tape.size, lo + rows))


#: bytes of the widest ``K``-fold R-quantity of one slice of a batch (:func:`tape_product`):
#: past a few MiB each fresh tensor is a fresh ``mmap`` whose pages fault in on first write, and
#: glibc trims its heap around them (docs/BENCHMARKS.md §0)
ROW_BYTES = 4 << 20
#: the same bound on an accelerator, whose caching allocator has no such cost: only a memory
#: bound (not measured yet, docs/BENCHMARKS.md §7)
DEVICE_ROW_BYTES = 256 << 20


def _rows(plan: Plan, values: list, lo: int, hi: int) -> list:
    """A tape's per-layer values for samples ``lo..hi-1`` (views; the weights whole)."""
    out = []
    for layer, v in zip(plan.layers, values):
        if layer[0] in ("affine", "norm"):
            out.append((v[0][lo:hi], *v[1:]))
        elif layer[0] == "act":
            out.append([None if t is None else t[lo:hi] for t in v])
        else:  # a pooling's per-sample input shape, maxima, matrix and output positions
            out.append((v[0], None if v[1] is None else v[1][lo:hi], *v[2:]))
    return out


def _rows_product(plan: Plan, tape: Tape, cols: list, pieces: list, size: float, K: int,
                  lo: int, hi: int) -> None:
    """The R-passes for samples ``lo..hi-1`` of the batch. An R-quantity is held folded,
    ``(B·K, features...)`` with ``B = hi - lo``."""
    B = hi - lo
    whole = lo == 0 and hi == tape.size
    values = tape.values if whole else _rows(plan, tape.values, lo, hi)
    grads = tape.grads if whole else [None if g is None else g[lo:hi] for g in tape.grads]
    probs = None if tape.probs is None else tape.probs[lo:hi]
    Rz = None  # R{z}, folded; None while it is zero (below every selected layer)
    saved = [None] * len(plan.layers)
    for i in range(plan.lowest, len(plan.layers)):
        layer = plan.layers[i]
        saved[i] = Rz
        if layer[0] == "affine":
            z, W = values[i]
            Rz = _forward_affine(layer[1], z, W, Rz, cols[i], grads[i].shape[2:], B, K)
        elif layer[0] == "norm":
            Rz = norm_r_forward(values[i], Rz, *cols[i], B, K)
        elif layer[0] == "act":
            d1, d2g = values[i]
            if d2g is None and Rz.is_contiguous():  # R{a} is not needed again: in place
                Rz.view(B, K, -1).mul_(d1.reshape(B, 1, -1))
            else:
                Rz = (Rz.reshape(B, K, -1) * d1.reshape(B, 1, -1)).view(Rz.shape)
        else:
            _, idx, P, spatial = values[i]
            if P is not None:  # an average pooling as a matmul by its matrix
                Rz = (Rz.reshape(-1, P.shape[0]) @ P).view(*Rz.shape[:2], *spatial)
            else:
                Rz = pool(layer[1], Rz) if idx is None else gather_maxima(Rz, idx, B)
    if plan.loss == "ce":
        p = probs.unsqueeze(1)
        Rz = Rz.reshape(B, K, -1)
        Rg = (Rz - (Rz * p).sum(2, keepdim=True)).mul_(p).div_(tape.size).view(B * K, -1)
    else:
        Rg = Rz * (2.0 / tape.numel)
    for i in range(len(plan.layers) - 1, plan.lowest - 1, -1):
        layer = plan.layers[i]
        if layer[0] == "affine":
            m = layer[1]
            z, W = values[i]
            VW, VWt, Vb = cols[i]
            o, n_in = W.shape[:2]
            g = grads[i]
            wide = Rg.reshape(B, K * o, *Rg.shape[2:])  # R{g} as a K-fold wider output
            if VW is not None:
                hv = weight_grad(m, wide, z, VW, bias=Vb is not None)
                if Vb is not None:
                    hv, hb = hv
                    pieces[plan.index[layer[3]]].add_(hb.view(K, o), alpha=size)
                hv = hv.reshape(K, o, *W.shape[1:])
                if saved[i] is not None and type(m) is nn.Linear:  # K matmuls into hv
                    hv.baddbmm_(g.T.expand(K, o, B), saved[i].view(B, K, n_in).transpose(0, 1))
                elif saved[i] is not None:
                    Rz_wide = saved[i].reshape(B, K * n_in, *saved[i].shape[2:])
                    hv2 = weight_grad(m, g, Rz_wide, VWt).reshape(o, K, *W.shape[1:])
                    hv.add_(hv2.transpose(0, 1))
                pieces[plan.index[layer[2]]].add_(hv, alpha=size)
            elif Vb is not None:
                pieces[plan.index[layer[3]]].add_(Rg.reshape(B, K, o, -1).sum((0, 3)), alpha=size)
            if i > plan.lowest:
                Rg = _backward_affine(m, Rg, g, W, VWt, saved[i], B, K)
        elif layer[0] == "norm":
            Vg, Vb = cols[i]
            hv_g, hv_b, Rg = norm_r_backward(values[i], Rg, grads[i], saved[i], Vg, Vb, B, K,
                                             i > plan.lowest)
            if hv_g is not None:
                pieces[plan.index[layer[2]]].add_(hv_g, alpha=size)
            if hv_b is not None:
                pieces[plan.index[layer[3]]].add_(hv_b, alpha=size)
        elif layer[0] == "act":
            d1, d2g = values[i]
            if not Rg.is_contiguous():
                Rg = Rg.contiguous()
            flat = Rg.view(B, K, -1)
            flat.mul_(d1.reshape(B, 1, -1))  # R{g} is always a fresh tensor here
            if d2g is not None:
                flat.addcmul_(d2g.reshape(B, 1, -1), saved[i].reshape(B, K, -1))
        else:
            _, idx, P, _ = values[i]
            if P is not None:
                Rg = (Rg.reshape(-1, P.shape[1]) @ P.T).view(saved[i].shape)
            else:
                Rg = (pool_adjoint(layer[1], Rg, saved[i].shape) if idx is None
                      else scatter_maxima(Rg, idx, saved[i].shape, B))


def _backward_affine(m, Rg, g, W, VWt, Rz_in, B, K):
    """``R{g_in} = A_Wᵀ(R{g}) + A_{V_W}ᵀ(g)``, folded ``(B·K, in, ...)``."""
    n_in = W.shape[1]
    if type(m) is nn.Linear:
        if VWt is None:
            return Rg @ W
        return (g @ VWt).view(B * K, n_in).addmm_(Rg, W)
    out = input_grad(m, Rg, Rz_in, W)
    if VWt is not None:
        wide_in = Rz_in.reshape(B, K * n_in, *Rz_in.shape[2:])
        out.add_(input_grad(m, g, wide_in, VWt).reshape(out.shape))
    return out
