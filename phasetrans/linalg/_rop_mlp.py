"""Pearlmutter's R-operator written out for multilayer perceptrons: the exact batch Hessian
product ``H_b V`` of ``K`` columns for an ``nn.Sequential`` of ``nn.Linear`` layers and
elementwise activations under cross-entropy or mean-squared error, without an autograd graph.

Reference: Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6 (1994),
§4 (the R-operator of a feed-forward network); THEORY §6. With ``z_0`` the inputs, a linear layer
``z' = z Wᵀ + b`` and an activation ``z' = σ(a)``, the gradient ``g = ∂L_b/∂z'`` of every layer's
output, and ``R{·}`` the directional derivative along ``v = (V_W, V_b)``::

    forward   R{z'} = R{z} Wᵀ + z V_Wᵀ + V_b            (linear)
              R{z'} = σ'(a) ⊙ R{a}                      (activation)
    loss      R{g_n} = (diag(p) − p pᵀ) R{z_n} / B      (cross-entropy, p = softmax(z_n))
              R{g_n} = 2 R{z_n} / numel(z_n)            (mean-squared error)
    backward  R{g_in} = R{g} W + g V_W                  (linear)
              R{g_in} = σ'(a) ⊙ R{g} + σ''(a) ⊙ g ⊙ R{a} (activation)
    product   (H_b v)_W = R{g}ᵀ z + gᵀ R{z},   (H_b v)_b = Σ_batch R{g}

The ``K`` columns share every matmul: the R-quantities are laid out ``(B, K, features)``, so each
term is one matmul of ``B·K`` rows (or of ``K·out`` columns) with no copy, and an exact product
costs six matmuls per layer and column, the minimum of Pearlmutter's product. The autograd
engine's double backward of the same product (``is_grads_batched``) copies its ``K``-fold
operands around every matmul to fold the batch and adds gradients in the engine: measured in
docs/BENCHMARKS.md §0 (digits MLP 64-256-256-10, K = 8).

:func:`linear_plan` says whether a model and loss are of this form (anything else, or a batch
:func:`record` cannot take, goes through autograd); :func:`record` keeps one batch's forward and
backward values (:class:`Tape`); :func:`tape_product` adds ``size · H_b V`` from a tape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Plan", "Tape", "linear_plan", "record", "columns", "tape_product"]

#: activations with their first and second derivatives below (exact types; ``nn.Identity`` and
#: ``nn.Dropout``, the identity in the operator's eval-mode passes, are skipped)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Softplus)
_SKIPPED = (nn.Identity, nn.Dropout)


@dataclass(frozen=True)
class Plan:
    """A model and loss of the written-out form: ``layers`` in forward order, each
    ``("linear", weight_name, bias_name | None)`` or ``("act", module)``; ``loss`` is ``"ce"``
    or ``"mse"``; ``index`` maps a selected parameter's name to its position in the operator's
    blocks; ``lowest`` is the first layer with a selected parameter (the backward stops there)."""

    layers: tuple
    loss: str
    first_weight: str
    in_features: int
    out_features: int
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
                 and loss_fn.label_smoothing == 0.0)
        return "ce" if plain else None
    if type(loss_fn) is nn.MSELoss and not _hooked(loss_fn) and loss_fn.reduction == "mean":
        return "mse"
    return None


def linear_plan(model: nn.Module, loss_fn, param_names: list[str]) -> Plan | None:
    """The :class:`Plan` of ``model`` under ``loss_fn`` with ``param_names`` selected, or
    ``None`` when it is not of the form: exactly ``nn.Sequential`` of exactly ``nn.Linear`` and
    :data:`ACTIVATIONS` (``nn.Identity``, ``nn.Dropout`` allowed), consistent widths, no hooks,
    parametrisations or overridden ``forward``; ``loss_fn`` ``nn.CrossEntropyLoss()`` or
    ``nn.MSELoss()`` (mean, no class weights, no label smoothing) or ``F.cross_entropy`` /
    ``F.mse_loss``; every selected parameter a weight or bias of one of the linear layers."""
    loss = _loss_kind(loss_fn)
    if loss is None or type(model) is not nn.Sequential or _hooked(model) or _global_hooks():
        return None
    if any(True for _ in model.buffers()):
        return None
    layers, widths = [], []
    owned = set()
    for name, m in model.named_children():
        if _hooked(m):
            return None
        if type(m) is nn.Linear:
            if widths and widths[-1] != m.in_features:
                return None
            widths.append(m.out_features)
            bias = f"{name}.bias" if m.bias is not None else None
            layers.append(("linear", f"{name}.weight", bias))
            owned.update(n for n in (f"{name}.weight", bias) if n)
        elif type(m) in ACTIVATIONS:
            layers.append(("act", m))
        elif type(m) not in _SKIPPED:
            return None
    linears = [layer for layer in layers if layer[0] == "linear"]
    if not linears or not set(param_names) <= owned:
        return None
    first = dict(model.named_parameters())[linears[0][1]]
    index = {n: i for i, n in enumerate(param_names)}
    lowest = min(i for i, layer in enumerate(layers)
                 if layer[0] == "linear" and (layer[1] in index or layer[2] in index))
    return Plan(tuple(layers), loss, linears[0][1], first.shape[1], widths[-1], index, lowest)


def _activation(m: nn.Module, a: torch.Tensor) -> torch.Tensor:
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


def _derivatives(m: nn.Module, a: torch.Tensor, out: torch.Tensor):
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


class Tape:
    """One batch's values for :func:`tape_product`: per layer the linear layers' inputs and
    weights, the activations' ``σ'(a)`` and ``σ''(a) ⊙ g``, the gradient ``g`` of every linear
    layer's output, the softmax (cross-entropy); ``loss`` (a 0-d tensor) and ``nbytes`` (the
    memory it holds beyond the batch and the model)."""

    __slots__ = ("values", "grads", "probs", "size", "numel", "loss", "nbytes")


def record(plan: Plan, weights: dict, inputs, targets) -> Tape | None:
    """The :class:`Tape` of one batch (no autograd), or ``None`` when the batch is not of the
    form (inputs a 2-d tensor of the first layer's width and the weights' dtype; targets class
    indices in range (cross-entropy) or a tensor of the outputs' shape and dtype (mean-squared
    error)), so that the caller takes the autograd path and the user's loss sees the batch."""
    first = weights[plan.first_weight]
    if not (isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor)
            and inputs.dim() == 2 and inputs.shape[0] > 0 and inputs.shape[1] == plan.in_features
            and inputs.dtype == first.dtype and inputs.device == first.device):
        return None
    B = inputs.shape[0]
    if plan.loss == "ce":
        if targets.dtype != torch.long or targets.shape != (B,) or plan.out_features < 1:
            return None
        if bool((targets < 0).any()) or bool((targets >= plan.out_features).any()):
            return None
    elif targets.shape != (B, plan.out_features) or targets.dtype != inputs.dtype:
        return None
    tape = Tape()
    values, nbytes = [], 0
    z = inputs
    with torch.no_grad():
        for layer in plan.layers:
            if layer[0] == "linear":
                W = weights[layer[1]]
                b = weights[layer[2]] if layer[2] else None
                values.append((z, W))
                z = F.linear(z, W, b)
            else:
                out = _activation(layer[1], z)
                d1, d2 = _derivatives(layer[1], z, out)
                values.append([d1, d2])  # d2 becomes σ''(a) ⊙ g in the backward below
                nbytes += 2 * d1.numel() * d1.element_size()
                z = out
        if plan.loss == "ce":
            tape.loss = F.cross_entropy(z, targets)
            p = torch.softmax(z, 1)
            g = p.clone()
            g[torch.arange(B, device=g.device), targets] -= 1
            g /= B
            tape.probs = p
        else:
            tape.loss = F.mse_loss(z, targets)
            g = (z - targets) * (2.0 / z.numel())
            tape.probs = None
        tape.numel = z.numel()
        grads = [None] * len(plan.layers)
        for i in range(len(plan.layers) - 1, plan.lowest - 1, -1):
            if plan.layers[i][0] == "linear":
                grads[i] = g
                if i > plan.lowest:
                    g = g @ values[i][1]
            else:
                d1, d2 = values[i]
                if d2 is not None:
                    values[i][1] = d2 * g
                g = g * d1
        for v in values:
            if isinstance(v, tuple) and v[0] is not inputs:
                nbytes += v[0].numel() * v[0].element_size()
        nbytes += sum(t.numel() * t.element_size() for t in grads if t is not None)
    tape.values, tape.grads, tape.size, tape.nbytes = values, grads, B, nbytes
    if tape.probs is not None:
        tape.nbytes += tape.probs.numel() * tape.probs.element_size()
    return tape


def columns(plan: Plan, blocks: list) -> list:
    """Per layer, the columns ``V`` of its parameters for one product: ``(V_W as (K·out, in),
    V_W as (out, K·in), V_b as (1, K·out))`` with ``None`` for what is not selected, from the
    operator's per-parameter ``blocks`` ``(K, *shape)`` (one copy of ``V_W`` per product)."""
    out = []
    for layer in plan.layers:
        if layer[0] != "linear":
            out.append(None)
            continue
        VW = VWt = Vb = None
        if layer[1] in plan.index:
            block = blocks[plan.index[layer[1]]]  # (K, o, i)
            K, o, i = block.shape
            VW = block.reshape(K * o, i)
            VWt = block.permute(1, 0, 2).reshape(o, K * i)
        if layer[2] is not None and layer[2] in plan.index:
            Vb = blocks[plan.index[layer[2]]].reshape(1, -1)
        out.append((VW, VWt, Vb))
    return out


@torch.no_grad()
def tape_product(plan: Plan, tape: Tape, cols: list, pieces: list, size: float, K: int) -> None:
    """``size · H_b V`` added to the per-parameter ``pieces`` ``(K, *shape)`` from the batch's
    ``tape`` and the product's ``cols`` (:func:`columns`): the forward, loss and backward
    R-passes of the module docstring, the ``K`` columns in every matmul."""
    B = tape.size
    Rz = None  # R{z} as (B, K, features); None while it is zero (below every selected layer)
    saved = [None] * len(plan.layers)
    for i in range(plan.lowest, len(plan.layers)):
        layer = plan.layers[i]
        if layer[0] == "linear":
            z, W = tape.values[i]
            VW, _, Vb = cols[i]
            o = W.shape[0]
            saved[i] = Rz
            r = None
            if VW is not None:
                r = torch.addmm(Vb, z, VW.T) if Vb is not None else z @ VW.T
            elif Vb is not None:
                r = Vb.repeat(B, 1)
            if Rz is not None:
                prev = Rz.reshape(B * K, -1)
                r = prev @ W.T if r is None else r.view(B * K, o).addmm_(prev, W.T)
            Rz = r.view(B, K, o)
        else:
            d1, _ = tape.values[i]
            saved[i] = Rz
            Rz = Rz * d1.unsqueeze(1)
    if plan.loss == "ce":
        p = tape.probs.unsqueeze(1)
        Rg = (Rz - (Rz * p).sum(2, keepdim=True)).mul_(p).div_(B)
    else:
        Rg = Rz * (2.0 / tape.numel)
    for i in range(len(plan.layers) - 1, plan.lowest - 1, -1):
        layer = plan.layers[i]
        if layer[0] == "linear":
            z, W = tape.values[i]
            VW, VWt, Vb = cols[i]
            o, n_in = W.shape
            g = tape.grads[i]
            if VW is not None:
                piece = pieces[plan.index[layer[1]]]
                hv = (Rg.reshape(B, K * o).T @ z).view(K, o, n_in)
                if saved[i] is not None:
                    hv.baddbmm_(g.T.expand(K, o, B), saved[i].permute(1, 0, 2))
                piece.add_(hv, alpha=size)
            if Vb is not None:
                pieces[plan.index[layer[2]]].add_(Rg.sum(0), alpha=size)
            if i > plan.lowest:
                flat = Rg.reshape(B * K, o)
                Rg = (flat @ W if VWt is None else (g @ VWt).view(B * K, n_in).addmm_(flat, W))
                Rg = Rg.view(B, K, n_in)
        else:
            d1, d2g = tape.values[i]
            Rg = Rg * d1.unsqueeze(1)
            if d2g is not None:
                Rg.addcmul_(d2g.unsqueeze(1), saved[i])
