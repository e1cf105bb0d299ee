"""Pruning criteria beside global magnitude (issue 19): what to prune, and how to set the rest.

``prepare_criterion(criterion, model, data=..., loss_fn=...)`` returns a prepared criterion at
the model's current weights (see :mod:`.scores`): ``masks(sparsity, min_per_layer)`` prunes
exactly ``⌈sD⌉`` weights, ``weights(masks)`` gives the updated weights (OBS) or ``None``.

- ``"magnitude"``: ``|w|`` (:mod:`.magnitude`; the same masks as ``magnitude_masks``);
- ``"fisher_taylor"``: Fisher–Taylor sensitivity ``|w ḡ + ½ F_qq w²|`` (:mod:`.fisher_taylor`);
- ``"obs"``: Optimal Brain Surgeon saliency ``w²/(2[F⁻¹]_qq)`` and weight update with M-FAC's
  inverse empirical Fisher (:mod:`.obs`, :mod:`.mfac`);
- ``"layer_adaptive"``: per-layer sparsities by rate–distortion DP, magnitude within layers
  (:mod:`.layer_adaptive`);
- a callable ``criterion(model) -> {name: Tensor}`` of scores (higher = keep).

The pruning calls (``criterion_masks``, ``pruned``, ``find_threshold``, ``sweep``,
``pruning_curve``, ``pruning_radius``, ``validate``, the CLI's ``--criterion``) take any of these
as ``criterion=`` with ``data=``, ``loss_fn=`` and ``criterion_options=``, and prepare it once per
call with :func:`resolve_criterion` (the default ``"magnitude"`` keeps magnitude pruning's own
path, bit for bit).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal

from torch import nn

from ..._checks import check_model, preserve_model
from ._gradients import selected
from .fisher_taylor import fisher_taylor, fisher_taylor_scores
from .layer_adaptive import LayerAdaptiveCriterion, allocate, layer_adaptive, layer_distortions
from .magnitude import magnitude, magnitude_scores
from .mfac import MFACInverse
from .obs import OBSCriterion, obs, obs_saliencies, obs_update
from .scores import Criterion, ScoreCriterion, check_scores, score_masks

__all__ = [
    "CRITERIA",
    "CriterionName",
    "Criterion",
    "ScoreCriterion",
    "OBSCriterion",
    "LayerAdaptiveCriterion",
    "MFACInverse",
    "prepare_criterion",
    "resolve_criterion",
    "criterion_label",
    "CriterionLike",
    "score_masks",
    "magnitude",
    "magnitude_scores",
    "fisher_taylor",
    "fisher_taylor_scores",
    "obs",
    "obs_saliencies",
    "obs_update",
    "layer_adaptive",
    "layer_distortions",
    "allocate",
]

CriterionName = Literal["magnitude", "fisher_taylor", "obs", "layer_adaptive"]
#: What a ``criterion=`` argument accepts: a name, a callable ``model -> {name: scores}``, or a
#: prepared :class:`Criterion`.
CriterionLike = CriterionName | Callable[[nn.Module], Any] | Criterion

#: name -> builder ``(model, data=None, loss_fn=None, params=None, **options) -> Criterion``
CRITERIA: dict[str, Callable[..., Criterion]] = {
    "magnitude": magnitude,
    "fisher_taylor": fisher_taylor,
    "obs": obs,
    "layer_adaptive": layer_adaptive,
}


_COMMON = ("model", "data", "loss_fn", "params")


def _from_callable(criterion: Callable, model: nn.Module, params: Any) -> ScoreCriterion:
    """The user's ``criterion(model) -> {name: Tensor}`` scores, checked against the model."""
    with preserve_model(model):
        scores = criterion(model)
    items = check_scores(scores, "criterion(model)")
    named = dict(model.named_parameters())
    for n, t in items:
        if n not in named:
            raise ValueError(f"criterion(model) scores a parameter the model does not have: {n!r}")
        if t.shape != named[n].shape:
            raise ValueError(
                f"criterion(model)[{n!r}] has shape {tuple(t.shape)}, expected {tuple(named[n].shape)}"
            )
    if params is not None:
        wanted = [n for n, _ in selected(model, params)]
        if sorted(wanted) != sorted(n for n, _ in items):
            raise ValueError(
                f"criterion(model) scores {sorted(n for n, _ in items)}, but params selects {wanted}"
            )
    order = {n: i for i, n in enumerate(named)}
    ordered = sorted(items, key=lambda item: order[item[0]])
    return ScoreCriterion(getattr(criterion, "__name__", "custom"), {n: t.clone() for n, t in ordered})


def prepare_criterion(
    criterion: Any, model: nn.Module, data: Any = None, loss_fn: Any = None, params: Any = None,
    **options: Any,
) -> Criterion:
    """A prepared criterion for ``criterion``: a name in :data:`CRITERIA` (built with ``data``,
    ``loss_fn``, ``params`` and the builder's ``options``), a callable ``criterion(model)``
    returning scores, or an already prepared criterion (returned as is). The model comes back
    bit for bit."""
    check_model(model)
    if isinstance(criterion, str):
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {list(CRITERIA)} or a callable, got {criterion!r}")
        builder = CRITERIA[criterion]
        known = [a for a in inspect.signature(builder).parameters if a not in _COMMON]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"criterion={criterion!r} takes no option {unknown}; its options: {known}")
        return builder(model, data=data, loss_fn=loss_fn, params=params, **options)
    if options:
        raise TypeError(f"options {sorted(options)} apply only to a criterion given by name")
    if isinstance(criterion, Criterion):
        return criterion
    if callable(criterion):
        return _from_callable(criterion, model, params)
    raise TypeError(
        f"criterion must be one of {list(CRITERIA)}, a callable model -> {{name: scores}} or a "
        f"prepared criterion, got {type(criterion).__name__}"
    )


def resolve_criterion(
    criterion: Any, model: nn.Module, data: Any = None, loss_fn: Any = None, params: Any = None,
    options: Any = None,
) -> Criterion | None:
    """The ``criterion=`` argument of the pruning calls (``criterion_masks``, ``pruned``,
    ``find_threshold``, ``sweep``, ``validate``), prepared once, at the model's current weights:
    ``None`` for the default ``"magnitude"`` without options (the callers then take global
    magnitude pruning's own path, so their results are bit for bit those without a criterion),
    else :func:`prepare_criterion` with ``data``, ``loss_fn``, ``params`` and ``options`` (the
    builder's keyword arguments, a dict; named ``criterion_options`` in the callers). Data
    passes happen here only."""
    if options is None:
        options = {}
    elif not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise TypeError(
            f"criterion_options must be a dict of keyword arguments, got {type(options).__name__}"
        )
    if isinstance(criterion, str) and criterion == "magnitude" and not options:
        check_model(model)
        return None
    return prepare_criterion(criterion, model, data, loss_fn, params, **dict(options))


def criterion_label(criterion: Any) -> str:
    """A short name for ``criterion`` (a name, a prepared criterion's ``.name``, a callable's
    ``__name__``), for logs and reports."""
    if isinstance(criterion, str):
        return criterion
    name = getattr(criterion, "name", None) or getattr(criterion, "__name__", None)
    return name if isinstance(name, str) else type(criterion).__name__
