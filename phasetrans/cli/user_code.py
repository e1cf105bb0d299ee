"""The user's own code on the command line, named ``package.module:attribute``: the model
factory (``--model``), the loss (``--loss``) and the held-out metric (``--metric``).

The module is imported with the current directory on ``sys.path`` (as ``python -m`` would), so a
``mymodels.py`` next to the data works from the console script too. Every bad spec raises
:class:`~phasetrans.cli.config.UsageError` (exit code 2) naming the option.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

from ..report.validate_args import METRICS
from .config import UsageError

__all__ = ["LOSSES", "METRICS", "is_spec", "import_spec", "model_from_factory", "make_loss",
           "make_metric", "default_metric"]

LOSSES = ("cross_entropy", "mse")
_SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_spec(value: str) -> bool:
    """Whether ``value`` names user code (it contains ``:``) rather than a built-in name."""
    return ":" in value


def import_spec(spec: str, option: str) -> Any:
    """The object ``attribute`` (dotted) of the module ``package.module`` in ``"package.module:
    attribute"``; :class:`UsageError` naming ``option`` when the spec is malformed, the module
    cannot be imported or has no such attribute."""
    if not _SPEC.match(spec):
        raise UsageError(f"{option} must be a built-in name or package.module:attribute, got {spec!r}")
    module_name, attr = spec.split(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # a module next to the user's files, as with python -m
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - not found, or the module failed while importing
        raise UsageError(f"{option} {spec}: cannot import module {module_name!r}: "
                         f"{type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{option} {spec}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _call_factory(factory: Any, spec: str, option: str, kwargs: dict) -> Any:
    if not callable(factory):
        raise UsageError(f"{option} {spec}: {type(factory).__name__} is not callable (a factory)")
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise UsageError(f"{option} {spec}: calling the factory with {kwargs or 'no arguments'} "
                         f"failed: {exc}") from None


def model_from_factory(spec: str, kwargs: dict) -> Any:
    """``factory(**kwargs)`` of ``--model package.module:factory`` (``kwargs``: the config's
    ``model_kwargs``), which must return a ``torch.nn.Module``."""
    from torch import nn

    model = _call_factory(import_spec(spec, "--model"), spec, "--model", kwargs)
    if not isinstance(model, nn.Module):
        raise UsageError(f"--model {spec}: the factory must return a torch.nn.Module, "
                         f"got {type(model).__name__}")
    return model


def make_loss(name: str) -> Any:
    """The batch-mean loss of ``--loss``: ``cross_entropy`` (default), ``mse``, or
    ``package.module:factory`` called without arguments (a loss class such as
    ``torch.nn:SmoothL1Loss`` is such a factory) returning ``loss(outputs, targets)``."""
    from torch import nn

    if name == "cross_entropy":
        return nn.CrossEntropyLoss()
    if name == "mse":
        return nn.MSELoss()
    if not is_spec(name):
        raise UsageError(f"--loss must be one of {list(LOSSES)} or package.module:factory, got {name!r}")
    loss = _call_factory(import_spec(name, "--loss"), name, "--loss", {})
    if not callable(loss):
        raise UsageError(f"--loss {name}: the factory must return a callable loss(outputs, targets), "
                         f"got {type(loss).__name__}")
    return loss


def default_metric(loss: str) -> str:
    """``accuracy`` for the cross-entropy loss, ``neg_loss`` (minus the test loss) otherwise."""
    return "accuracy" if loss == "cross_entropy" else "neg_loss"


def make_metric(name: str) -> Any:
    """``--metric``: ``accuracy`` or ``neg_loss`` (passed on by name), or
    ``package.module:function`` with ``function(model, data) -> float``, higher is better."""
    if name in METRICS:
        return name
    if not is_spec(name):
        raise UsageError(f"--metric must be one of {list(METRICS)} or package.module:function, "
                         f"got {name!r}")
    metric = import_spec(name, "--metric")
    if not callable(metric):
        raise UsageError(f"--metric {name}: {type(metric).__name__} is not callable "
                         f"(expected function(model, data) -> float)")
    return metric
