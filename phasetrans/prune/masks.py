"""Global one-shot magnitude pruning: masks, a restoring context manager, permanent pruning.

Global magnitude pruning (Han et al. 2015; Frankle & Carbin, ICLR 2019; Lee et al., ICLR 2021
for the layer-collapse caveat) zeroes the ``k = ⌈sD⌉`` prunable weights of smallest ``|w|`` over
all layers together (THEORY §1: ``w^(s)``, the closest point to ``w*`` with ``k`` zeros; the
one-shot recipe of Zhang et al., NeurIPS 2024).

Conventions
- Masks are ``{parameter name: BoolTensor}``, ``True`` = kept, same shape/device as the weight.
- Exactly ``k = ⌈sD⌉`` weights are pruned (:func:`~phasetrans.params.pruned_count`, which guards
  float error so that e.g. ``0.3 · 10`` gives 3, not 4; re-exported here).
- Ties are broken deterministically: order by ``|w|``, then by the flat index in model order
  (the parameters' order in ``model.named_parameters()``, each flattened row-major); among equal
  magnitudes the *lower* index is pruned first.
- The k-th magnitude is found by radix selection on the float bits of ``|w|`` (16 bits per pass,
  chunked histograms), never by sorting a concatenated copy: memory stays ``O(chunk)`` besides the
  masks, for 10^8 weights and more.
- Without ties the masks equal those of
  ``torch.nn.utils.prune.global_unstructured(..., pruning_method=L1Unstructured, amount=k)``
  with an *integer* amount (a float amount there means ``round(amount · D)``, not ``⌈sD⌉``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .._checks import check_fraction, check_model, preserve_model
from ..params import (
    ParamSelection,
    check_masks,
    effective_values,
    keep_torch_prune_attributes,
    pruned_count,
    select_parameters,
    torch_prune_hooks,
    torch_pruned_masks,
)
from .criteria import Criterion, CriterionLike, resolve_criterion

__all__ = [
    "pruned_count",
    "magnitude_masks",
    "criterion_masks",
    "pruned",
    "apply_masks",
    "to_torch_prune",
    "from_torch_prune",
    "mask_sparsity",
    "check_masks",
]

_CHUNK = 1 << 22  # elements per histogram chunk
_BINS = 1 << 16  # 16 bits per radix pass
_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _selected(model: nn.Module, params: ParamSelection) -> list[tuple[str, torch.Tensor]]:
    """The selected parameters' values in model order (``named_parameters`` order): the
    parameters themselves, or the effective weight ``weight_orig * weight_mask`` of a layer pruned
    with ``torch.nn.utils.prune`` (its pruned entries are zeros, so they are pruned first)."""
    names = set(select_parameters(model, params))
    ordered = [n for n, _ in model.named_parameters() if n in names]
    values = effective_values(model, ordered)
    return [(n, values[n]) for n in ordered]


def _common_dtype(tensors: list[torch.Tensor]) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _bits_chunks(t: torch.Tensor, dtype: torch.dtype) -> Iterator[torch.Tensor]:
    """Integer views of ``|t|`` (cast to ``dtype``), chunk by chunk; monotone in ``|t|``."""
    flat = t.detach().reshape(-1)
    view = _INT_VIEW[torch.empty((), dtype=dtype).element_size()]
    for start in range(0, flat.numel(), _CHUNK):
        yield flat[start : start + _CHUNK].to(dtype).abs().contiguous().view(view)


def _check_finite(items: list[tuple[str, torch.Tensor]]) -> None:
    for name, t in items:
        flat = t.detach().reshape(-1)
        if any(bool(torch.isnan(flat[i : i + _CHUNK]).any()) for i in range(0, flat.numel(), _CHUNK)):
            raise ValueError(f"model: weight {name!r} contains NaN; magnitudes cannot be ranked")


def _kth_bits(tensors: list[torch.Tensor], k: int, dtype: torch.dtype) -> tuple[int, int]:
    """Radix select: the bit pattern ``T`` of the k-th smallest ``|w|`` (1-indexed, 1 <= k <= D)
    and the number of elements strictly below it."""
    nbits = torch.empty((), dtype=dtype).element_size() * 8
    device = tensors[0].device
    prefix, below = 0, 0
    for shift in range(nbits - 16, -1, -16):
        hist = torch.zeros(_BINS, dtype=torch.int64, device=device)
        for t in tensors:
            for bits in _bits_chunks(t, dtype):
                if shift + 16 < nbits:
                    bits = bits[(bits >> (shift + 16)) == prefix]
                if bits.numel():
                    digits = (bits >> shift).to(torch.int64) & 0xFFFF
                    counts = torch.bincount(digits, minlength=_BINS)
                    hist += counts.to(device)
        cum = hist.cumsum(0)
        b = int(torch.searchsorted(cum, torch.tensor([k - below], device=device)).item())
        below += int(cum[b - 1].item()) if b > 0 else 0
        prefix = (prefix << 16) | b
    return prefix, below


def _layer_masks(
    items: list[tuple[str, torch.Tensor]], k: int, dtype: torch.dtype
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Masks pruning the k smallest (|w|, flat index) over ``items`` together; per-layer counts."""
    masks: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    if k <= 0:
        for name, t in items:
            masks[name] = torch.ones_like(t, dtype=torch.bool)
            counts[name] = 0
        return masks, counts
    threshold, below = _kth_bits([t for _, t in items], k, dtype)
    ties_left = k - below
    for name, t in items:
        mask = torch.empty(t.numel(), dtype=torch.bool, device=t.device)
        start = 0
        for bits in _bits_chunks(t, dtype):
            keep = bits > threshold
            if ties_left > 0:
                eq = bits == threshold
                n_eq = int(eq.sum().item())
                if n_eq <= ties_left:
                    ties_left -= n_eq
                else:
                    keep |= eq
                    keep[eq.nonzero().reshape(-1)[:ties_left]] = False
                    ties_left = 0
            else:
                keep |= bits == threshold
            mask[start : start + keep.numel()] = keep
            start += keep.numel()
        mask = mask.reshape(t.shape)
        masks[name] = mask
        counts[name] = int(mask.numel() - mask.sum().item())
    return masks, counts


def _magnitude_masks(
    items: list[tuple[str, torch.Tensor]], sparsity: float, min_per_layer: float
) -> dict[str, torch.Tensor]:
    _check_finite(items)
    dtype = _common_dtype([t for _, t in items])
    total = sum(t.numel() for _, t in items)
    k = pruned_count(sparsity, total)
    caps = {n: t.numel() - pruned_count(min_per_layer, t.numel()) for n, t in items}
    if sum(caps.values()) < k:
        raise ValueError(
            f"min_per_layer={min_per_layer} keeps at least {total - sum(caps.values())} of {total} "
            f"weights, so sparsity={sparsity} ({k} pruned) is infeasible; lower min_per_layer"
        )
    masks: dict[str, torch.Tensor] = {}
    active = list(items)
    remaining = k
    while True:
        layer, counts = _layer_masks(active, remaining, dtype)
        over = [(n, t) for n, t in active if counts[n] > caps[n]]
        if not over:
            masks.update(layer)
            break
        # a layer over its cap at this threshold stays over it at any higher one: fix it at its cap
        for n, t in over:
            masks[n] = _layer_masks([(n, t)], caps[n], dtype)[0][n]
            remaining -= caps[n]
        over_names = {n for n, _ in over}
        active = [(n, t) for n, t in active if n not in over_names]
        if not active:
            break
    return {n: masks[n] for n, _ in items}


def magnitude_masks(
    model: nn.Module, sparsity: float, min_per_layer: float = 0.0, params: ParamSelection = None
) -> dict[str, torch.Tensor]:
    """Global one-shot magnitude masks (``True`` = kept) at ``sparsity`` ``s``.

    Prunes exactly ``k = ⌈sD⌉`` of the ``D`` selected weights (:func:`pruned_count`): those of
    smallest ``|w|`` over all layers together, ties by flat index in model order (lower pruned
    first). ``min_per_layer = f`` keeps at least ``⌈f·n_l⌉`` weights of every layer (the guard of
    global magnitude pruning against layer collapse, Lee et al. 2021): layers that would fall below
    it keep exactly their floor (their largest weights) and the remaining prunes go, by magnitude,
    to the other layers, so ``k`` stays exact; ``ValueError`` if the floors make it infeasible.
    ``params``: ``None`` (weights of Linear/Conv layers), ``"all"`` or a list of names.
    The model is only read (no copy of it is made, so that 10^8 weights fit), never changed.
    """
    check_model(model)
    sparsity = check_fraction(sparsity, "sparsity")
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    with torch.no_grad():
        return _magnitude_masks(_selected(model, params), sparsity, min_per_layer)


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Prune ``model`` in place, permanently: zero every weight whose mask entry is ``False``.

    ``masks``: ``{parameter name: BoolTensor}`` as from :func:`magnitude_masks` (names and
    shapes checked before anything changes). Returns ``model``.
    """
    check_model(model)
    checked = check_masks(model, masks)
    with torch.no_grad():
        for p, mask in checked.values():
            p.masked_fill_(~mask.to(p.device), 0)
    return model


def criterion_masks(
    model: nn.Module,
    sparsity: float,
    criterion: CriterionLike = "magnitude",
    data: Any = None,
    loss_fn: Callable | None = None,
    min_per_layer: float = 0.0,
    params: ParamSelection = None,
    criterion_options: dict | None = None,
) -> dict[str, torch.Tensor]:
    """Global one-shot masks (``True`` = kept) of ``criterion`` at ``sparsity``: exactly
    ``k = ⌈sD⌉`` pruned, ``min_per_layer`` as in :func:`magnitude_masks`.

    ``criterion``: ``"magnitude"`` (the default: exactly :func:`magnitude_masks`),
    ``"fisher_taylor"``, ``"obs"``, ``"layer_adaptive"`` (these need ``data`` and, but for
    ``"layer_adaptive"``, ``loss_fn``; ``criterion_options`` go to the builder, e.g.
    ``{"damp": 1e-4}``), a callable ``criterion(model) -> {name: scores}`` (higher = keep), or a
    criterion prepared by :func:`~phasetrans.prune.criteria.prepare_criterion` (reuse it across
    sparsities: the data passes happen when it is prepared). Masks only: OBS's weight update is
    applied by :func:`pruned`. The model comes back bit for bit.
    """
    sparsity = check_fraction(sparsity, "sparsity")
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    crit = resolve_criterion(criterion, model, data, loss_fn, params, criterion_options)
    if crit is None:
        return magnitude_masks(model, sparsity, min_per_layer, params)
    return crit.masks(sparsity, min_per_layer)


def _pruned_point(
    model: nn.Module, crit: Criterion, sparsity: float, min_per_layer: float
) -> dict[str, torch.Tensor]:
    """Set the model to ``crit``'s pruned point at ``sparsity`` in place (OBS: the updated kept
    weights, pruned ones 0); returns the masks. Names and shapes are checked first."""
    masks = crit.masks(sparsity, min_per_layer)
    checked = check_masks(model, masks)
    new = crit.weights(masks)
    if new is not None:
        for name, value in new.items():
            p = checked[name][0] if name in checked else None
            if p is None or value.shape != p.shape:
                raise ValueError(f"criterion: updated weight {name!r} does not fit the model")
        with torch.no_grad():
            for name, value in new.items():
                checked[name][0].copy_(value)
    apply_masks(model, masks)
    return masks


@contextlib.contextmanager
def pruned(
    model: nn.Module,
    sparsity: float,
    min_per_layer: float = 0.0,
    params: ParamSelection = None,
    criterion: CriterionLike = "magnitude",
    data: Any = None,
    loss_fn: Callable | None = None,
    criterion_options: dict | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """``with pruned(model, s) as masks:`` — the model pruned to ``w^(s)`` inside the block.

    Zeroes the weights in place (masks from :func:`magnitude_masks`, or from ``criterion`` as in
    :func:`criterion_masks`; a criterion that updates the kept weights, OBS, sets them too) and
    yields the masks. On exit, also on an exception, everything comes back bit-for-bit: weights
    (including OBS's update and any changes made inside the block, e.g. a re-fit), gradients,
    buffers, ``requires_grad`` and train/eval mode.
    """
    check_model(model)
    sparsity = check_fraction(sparsity, "sparsity")
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    crit = resolve_criterion(criterion, model, data, loss_fn, params, criterion_options)
    with preserve_model(model), keep_torch_prune_attributes(model):
        if crit is None:
            with torch.no_grad():
                masks = _magnitude_masks(_selected(model, params), sparsity, min_per_layer)
            apply_masks(model, masks)
        else:
            masks = _pruned_point(model, crit, sparsity, min_per_layer)
        yield masks


def to_torch_prune(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Export masks to ``torch.nn.utils.prune``'s form, in place: each masked weight ``W`` of a
    module becomes ``weight_orig`` + buffer ``weight_mask`` (via ``prune.custom_from_mask``), for
    users of that API (``prune.remove`` makes it permanent). A mask for a ``weight_orig`` already
    pruned there is combined with its ``weight_mask`` (entries kept by both stay). Returns
    ``model``. :func:`from_torch_prune` reads the masks back."""
    from torch.nn.utils import prune

    check_model(model)
    checked = check_masks(model, masks)
    for name, (p, mask) in checked.items():
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        if attr.endswith("_orig") and attr[: -len("_orig")] in torch_prune_hooks(module):
            attr = attr[: -len("_orig")]
        prune.custom_from_mask(module, attr, mask.to(p.device))
    return model


def from_torch_prune(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks of a model pruned with ``torch.nn.utils.prune``: ``{"<module>.weight_orig":
    BoolTensor}`` (``True`` = kept, a copy of ``weight_mask``), keyed by the names of the
    Parameters that the model has now, so that they fit :func:`apply_masks`,
    :func:`~phasetrans.finetune.finetune_masked` and :func:`to_torch_prune`. Empty when nothing
    is pruned that way."""
    check_model(model)
    return {n: m.detach().to(torch.bool).clone() for n, m in torch_pruned_masks(model).items()}


def mask_sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of entries pruned (``False``) over all masks."""
    if not isinstance(masks, Mapping) or not masks:
        raise TypeError("masks must be a non-empty dict {name: BoolTensor}")
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum().item()) for m in masks.values())
    return (total - kept) / total if total else 0.0

