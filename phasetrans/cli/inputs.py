"""What a command works on, from its settings: the dataset (:func:`dataset`), the model
(:func:`build_model`, with ``--checkpoint`` loaded), the Hessian batches, the output folder and the
sparsity grid. Every bad value raises :class:`~phasetrans.cli.config.UsageError` (exit code 2)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from .config import MAX_SPARSITIES, UsageError, load_checkpoint, settings
from .guards import require_weights
from .user_code import default_metric, is_spec, make_loss, make_metric, model_from_factory

__all__ = [
    "CONV_MODELS", "MLP_MODELS", "dataset", "build_model", "hessian_data", "out_dir",
    "parse_sparsities", "common_setup", "loss_fn", "metric", "checkpoint_file", "OUT_FILES",
]

CONV_MODELS = ("lenet", "vgg_small", "resnet20", "resnet32", "resnet56", "resnet18")
MLP_MODELS = ("mlp", "fc5", "fc12", "digits_mlp")


def dataset(cfg: dict, seed: int):
    """``(train, test)`` loaders of ``cfg["data"]`` (default digits; ``load_dataset``)."""
    from .. import data as data_mod

    name = cfg.get("data", "digits")
    kwargs = dict(cfg.get("data_kwargs", {}))
    if name not in data_mod.DATASET_NAMES:
        raise UsageError(f"--data must be one of {list(data_mod.DATASET_NAMES)}, got {name!r}")
    kwargs.setdefault("batch_size", cfg.get("batch_size", 128))
    if name != "synthetic_cifar" or "seed" not in kwargs:
        kwargs.setdefault("seed", seed)
    if name == "digits" and cfg.get("model", "digits_mlp") in CONV_MODELS:
        kwargs.setdefault("flatten", False)
    try:
        return data_mod.load_dataset(name, root=cfg.get("data_root"), **kwargs)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise UsageError(f"--data {name}: {exc}") from None


def _model_kwargs(name: str, cfg: dict, train: Any) -> dict:
    """``build_model`` arguments fitted to the data: input size or channels, number of classes."""
    import torch

    kwargs = dict(cfg.get("model_kwargs", {}))
    x, y = next(iter(train))
    num_classes = int(y.max().item()) + 1 if y.dtype == torch.long else None
    ds = getattr(getattr(train, "dataset", None), "tensors", None)
    if ds is not None and ds[1].dtype == torch.long:
        num_classes = int(ds[1].max().item()) + 1
    if name in MLP_MODELS:
        in_features = int(math.prod(x.shape[1:]))
        if name == "mlp":
            kwargs.setdefault("sizes", [in_features, 128, num_classes or 1])
        elif name != "digits_mlp":
            kwargs.setdefault("in_features", in_features)
        if name != "mlp" and num_classes:
            kwargs.setdefault("num_classes", num_classes)
    else:
        if x.dim() != 4:
            raise UsageError(f"--model {name} needs image inputs (N, C, H, W), got shape {tuple(x.shape)}")
        kwargs.setdefault("in_channels", int(x.shape[1]))
        if num_classes:
            kwargs.setdefault("num_classes", num_classes)
        if name == "lenet":
            kwargs.setdefault("image_size", int(x.shape[-1]))
    return kwargs


def build_model(cfg: dict, train: Any, seed: int):
    """The model ``cfg["model"]`` (default digits_mlp; or ``package.module:factory``, called
    with ``model_kwargs``) for the data, seeded, on ``--device``, with the ``--checkpoint``
    weights when given (loaded strictly into the model the factory built)."""
    import torch

    from .. import models

    name = cfg.get("model", "digits_mlp")
    if is_spec(name):  # the user's own factory, package.module:factory
        torch.manual_seed(seed)
        model = model_from_factory(name, dict(cfg.get("model_kwargs", {})))
    else:
        if name not in models.MODEL_NAMES:
            raise UsageError(f"--model must be one of {list(models.MODEL_NAMES)} or "
                             f"package.module:factory, got {name!r}")
        kwargs = _model_kwargs(name, cfg, train)
        torch.manual_seed(seed)
        try:
            model = models.build_model(name, **kwargs)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--model {name}: {exc}") from None
    device = cfg.get("device", "cpu")
    try:
        model = model.to(torch.device(device))
    except (RuntimeError, AssertionError) as exc:
        raise UsageError(f"--device {device}: {exc}") from None
    if cfg.get("checkpoint"):
        state = load_checkpoint(cfg["checkpoint"], device=device)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise UsageError(f"--checkpoint does not fit --model {name}: {exc}") from None
    return model


def hessian_data(train: Any, cfg: dict) -> Any:
    """The training set in batches of ``hessian_batch_size`` (default 2048) for the Hessian
    products: fewer, larger batches are much faster on CPU and give the same dataset Hessian."""
    from torch.utils.data import DataLoader

    size = cfg.get("hessian_batch_size", 2048)
    ds = getattr(train, "dataset", None)
    if ds is None:
        return train
    return DataLoader(ds, batch_size=size, shuffle=False)


#: The files each command writes to ``--out`` (checked before any work).
OUT_FILES: dict[str, tuple[str, ...]] = {
    "demo": ("report.json", "spectrum.png", "crossing.png", "pruning_curve.png", "layers.png"),
    "validate": ("report.json", "spectrum.png", "crossing.png", "pruning_curve.png", "layers.png"),
    "spectrum": ("spectrum.json", "spectrum.png"),
    "predict": ("prediction.json", "crossing.png", "spectrum.png"),
    "sweep": ("sweep.jsonl",),
}


def out_dir(args: argparse.Namespace) -> Path | None:
    """``--out`` as a directory (created), or ``None``. Checked before any work: it must be (or
    become) a writable directory, and none of the command's output files there may be a folder
    or anything but a regular file (the sweep log not a symbolic link either)."""
    if getattr(args, "out", None) is None:
        return None
    from .._io import check_out_dir, check_regular_file

    try:
        out = check_out_dir(args.out, "--out", OUT_FILES.get(args.command, ()))
        if args.command == "sweep":
            check_regular_file(out / "sweep.jsonl", "--out", follow_symlinks=False)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return out


def parse_sparsities(cfg: dict) -> list[float]:
    """``--sparsities`` (comma-separated or a config list), or ``--num-points`` evenly spaced."""
    if "sparsities" in cfg:
        values = cfg["sparsities"]
        if isinstance(values, str):
            try:
                values = [float(v) for v in values.split(",") if v.strip()]
            except ValueError:
                raise UsageError(f"--sparsities must be comma-separated numbers, got {values!r}") from None
    else:
        n = cfg.get("num_points", 21)
        if n < 2:
            raise UsageError(f"--num-points must be >= 2, got {n}")
        values = [i / (n - 1) for i in range(n)]
    if len(values) > MAX_SPARSITIES:
        raise UsageError(f"--sparsities must hold at most {MAX_SPARSITIES} values, got {len(values)}")
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
                             for v in values):
        raise UsageError(f"sparsities must be numbers in [0, 1] (not booleans), got {values!r}")
    return [float(v) for v in values]


def common_setup(args: argparse.Namespace, can_train: bool | None = None) -> tuple[dict, Any, Any, Any]:
    """``(settings, model, train, test)`` for the commands that take ``--model``/``--data``.
    With ``can_train`` set, trained weights are required first
    (:func:`~phasetrans.cli.guards.require_weights`)."""
    import torch

    cfg = settings(args)
    if can_train is not None:
        require_weights(args, cfg, can_train)
    seed = cfg.get("seed", 0)
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    torch.manual_seed(seed)
    train, test = dataset(cfg, seed)
    model = build_model(cfg, train, seed)
    return cfg, model, train, test


def loss_fn(cfg: dict | None = None):
    """The loss of ``--loss`` (default cross-entropy; :func:`~phasetrans.cli.user_code.make_loss`)."""
    return make_loss((cfg or {}).get("loss", "cross_entropy"))


def metric(cfg: dict):
    """The held-out metric of ``--metric`` (default: accuracy with cross-entropy, else
    ``neg_loss``): a name for :func:`~phasetrans.validate` or ``function(model, data)``."""
    return make_metric(cfg.get("metric", default_metric(cfg.get("loss", "cross_entropy"))))


def checkpoint_file(cfg: dict, name: str) -> Path | None:
    """``--checkpoint-dir``/``name`` (the folder created), or ``None`` without the option."""
    folder = cfg.get("checkpoint_dir")
    if folder is None:
        return None
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--checkpoint-dir must be a directory, got an existing file: {path}")
    path.mkdir(parents=True, exist_ok=True)
    return path / name
