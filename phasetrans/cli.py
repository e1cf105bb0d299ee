"""The ``phasetrans`` command line: ``demo``, ``spectrum``, ``predict``, ``sweep``, ``validate``.

Exit codes: 0 success, 2 bad usage or bad input (unknown option, bad config, unsafe checkpoint,
missing file), 1 a failure while running, 130 interrupted. ``--json`` prints one JSON document on
standard output (progress bars and messages go to standard error).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "load_config", "load_checkpoint", "CONFIG_KEYS", "UsageError"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# The demo recipe: digits MLP 64-64-32-10 trained with an l1 penalty strong enough that most
# weights go to ~0 (the regime of the theory: R(s) stays small up to high sparsity). Measured over
# seeds 0-3: predicted - measured = +0.7, +2.1, +0.8, +1.3 points (l1 = 1e-3 for 30 epochs gave
# 2.5 to 32 points: the zero-tolerance accuracy threshold on 500 test samples is then noisy).
DEMO = {
    "hidden": (64, 32), "l1": 3e-3, "epochs": 60, "lr": 0.05, "batch_size": 128,
    "num_steps": 80, "num_probes": 10,
}
DEMO_QUICK = {**DEMO, "num_steps": 30, "num_probes": 4}  # same training, cheaper spectrum


class UsageError(Exception):
    """Bad input from the user: exit code 2."""


#: Keys accepted in a ``--config`` file (JSON or TOML), with their types.
CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "model_kwargs": (dict,),
    "data": (str,),
    "data_root": (str,),
    "data_kwargs": (dict,),
    "batch_size": (int,),
    "checkpoint": (str,),
    "device": (str,),
    "seed": (int,),
    "l1": (int, float),
    "epochs": (int,),
    "lr": (int, float),
    "eps": (int, float),
    "num_steps": (int,),
    "num_probes": (int,),
    "tolerance": (int, float),
    "refit": (int,),
    "resolution": (int, float),
    "negative": (str,),
    "sparsities": (list,),
    "num_points": (int,),
    "hessian_batch_size": (int,),
}

_CONV_MODELS = ("lenet", "vgg_small", "resnet20", "resnet32", "resnet56", "resnet18")
_MLP_MODELS = ("mlp", "fc5", "fc12", "digits_mlp")


# ------------------------------------------------------------------------------------------
# configuration and inputs
# ------------------------------------------------------------------------------------------
def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (``.toml``) config safely (``json`` / ``tomllib``: no code
    runs); unknown keys and wrongly typed values raise :class:`UsageError`."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config: file not found: {p}")
    raw = p.read_bytes()
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                raise UsageError("--config: TOML needs Python >= 3.11 (tomllib); use JSON") from None
            cfg = tomllib.loads(raw.decode("utf-8"))
        elif p.suffix.lower() == ".json":
            cfg = json.loads(raw.decode("utf-8"))
        else:
            raise UsageError(f"--config: expected a .json or .toml file, got {p.name!r}")
    except UsageError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config: could not parse {p}: {exc}") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"--config: the top level of {p} must be a table/object of settings")
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise UsageError(f"--config: unknown keys {unknown}; allowed: {sorted(CONFIG_KEYS)}")
    for key, value in cfg.items():
        types = CONFIG_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise UsageError(f"--config: {key} must be {names}, got {type(value).__name__} ({value!r})")
    return cfg


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> dict:
    """Load a state dict with ``torch.load(weights_only=True)``: tensors and plain containers
    only; a pickle that would run code is refused (:class:`UsageError`). Accepts a state dict or
    a dict holding one under ``state_dict`` / ``model_state_dict`` / ``model``."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--checkpoint: file not found: {p}")
    from ._io import safe_torch_load

    try:  # weights_only=True: a pickle that would import or run code is refused
        obj = safe_torch_load(p, "--checkpoint")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(f"--checkpoint: {p} does not hold a state dict (name -> tensor)")
    return {k: v.to(device) for k, v in obj.items()}


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Config file values, overridden by options given on the command line."""
    cfg = load_config(args.config) if getattr(args, "config", None) else {}
    for key in CONFIG_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    return cfg


def _dataset(cfg: dict, seed: int):
    from . import data as data_mod

    name = cfg.get("data", "digits")
    kwargs = dict(cfg.get("data_kwargs", {}))
    if name not in data_mod.DATASET_NAMES:
        raise UsageError(f"--data must be one of {list(data_mod.DATASET_NAMES)}, got {name!r}")
    kwargs.setdefault("batch_size", cfg.get("batch_size", 128))
    if name != "synthetic_cifar" or "seed" not in kwargs:
        kwargs.setdefault("seed", seed)
    if name == "digits" and cfg.get("model", "digits_mlp") in _CONV_MODELS:
        kwargs.setdefault("flatten", False)
    try:
        return data_mod.load_dataset(name, root=cfg.get("data_root"), **kwargs)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise UsageError(f"--data {name}: {exc}") from None


def _model(cfg: dict, train: Any, seed: int):
    import torch

    from . import models

    name = cfg.get("model", "digits_mlp")
    if name not in models.MODEL_NAMES:
        raise UsageError(f"--model must be one of {list(models.MODEL_NAMES)}, got {name!r}")
    kwargs = dict(cfg.get("model_kwargs", {}))
    x, y = next(iter(train))
    num_classes = int(y.max().item()) + 1 if y.dtype == torch.long else None
    ds = getattr(getattr(train, "dataset", None), "tensors", None)
    if ds is not None and ds[1].dtype == torch.long:
        num_classes = int(ds[1].max().item()) + 1
    if name in _MLP_MODELS:
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


def _hessian_data(train: Any, cfg: dict) -> Any:
    """The training set in batches of ``hessian_batch_size`` (default 2048) for the Hessian
    products: fewer, larger batches are much faster on CPU and give the same dataset Hessian."""
    from torch.utils.data import DataLoader

    size = cfg.get("hessian_batch_size", 2048)
    ds = getattr(train, "dataset", None)
    if ds is None:
        return train
    return DataLoader(ds, batch_size=size, shuffle=False)


def _out_dir(args: argparse.Namespace) -> Path | None:
    if getattr(args, "out", None) is None:
        return None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a directory, got an existing file: {out}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _emit(args: argparse.Namespace, payload: dict, text: str) -> None:
    from ._io import to_jsonable

    if args.json:
        print(json.dumps(to_jsonable(payload), indent=2))
    else:
        print(text)


def _log(args: argparse.Namespace, message: str) -> None:
    if not args.json and not args.quiet:
        print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# subcommands
# ------------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    import torch
    from torch import nn

    from . import data, models
    from .pipeline import validate

    recipe = DEMO_QUICK if args.quick else DEMO
    out = _out_dir(args)
    t0 = time.perf_counter()
    train, test = data.digits(batch_size=recipe["batch_size"], seed=args.seed)
    torch.manual_seed(args.seed)
    model = models.digits_mlp(hidden=recipe["hidden"])
    _log(args, f"demo: digits MLP {model_shape(model)}, l1 = {recipe['l1']}, "
               f"{recipe['epochs']} epochs, SLQ {recipe['num_probes']}×{recipe['num_steps']}")
    report = validate(
        model, nn.CrossEntropyLoss(), train, test, l1=recipe["l1"], epochs=recipe["epochs"],
        lr=recipe["lr"], num_steps=recipe["num_steps"], num_probes=recipe["num_probes"],
        seed=args.seed, out=out, hessian_data=_hessian_data(train, {}),
        progress=not (args.json or args.quiet),
    )
    wall = time.perf_counter() - t0
    payload = {"command": "demo", "predicted_sparsity": report.predicted,
               "measured_sparsity": report.measured, "difference": report.difference,
               "window": [report.prediction.lower, report.prediction.upper],
               "seconds": wall, "out": None if out is None else str(out),
               "report": report.to_dict()}
    text = report.summary()
    text += (f"\n\npredicted {report.predicted:.3f} vs measured {report.measured:.3f} "
             f"({100 * abs(report.difference):.1f} points apart) in {wall:.0f} s")
    if out is not None:
        text += f"\nwrote {out / 'report.json'} and {len(report.figures)} figures to {out}"
    _emit(args, payload, text)
    return EXIT_OK


def model_shape(model: Any) -> str:
    from .params import prunable_parameters

    return f"({sum(p.numel() for p in prunable_parameters(model).values())} prunable weights)"


def _common_setup(args: argparse.Namespace) -> tuple[dict, Any, Any, Any]:
    import torch

    cfg = _settings(args)
    seed = cfg.get("seed", 0)
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    torch.manual_seed(seed)
    train, test = _dataset(cfg, seed)
    model = _model(cfg, train, seed)
    return cfg, model, train, test


def _loss_fn():
    from torch import nn

    return nn.CrossEntropyLoss()


def cmd_spectrum(args: argparse.Namespace) -> int:
    from ._io import atomic_write_text
    from .operators import HessianOperator
    from .plots import plot_spectrum
    from .spectral import slq

    cfg, model, train, _ = _common_setup(args)
    out = _out_dir(args)
    t = time.perf_counter()
    H = HessianOperator(model, _loss_fn(), _hessian_data(train, cfg))
    spec = slq(H, num_steps=cfg.get("num_steps", 80), num_probes=cfg.get("num_probes", 10),
               seed=cfg.get("seed", 0))
    seconds = time.perf_counter() - t
    tr = spec.trace()
    live = spec.nodes[spec.weights > 0]
    payload = {"command": "spectrum", "dim": spec.dim, "num_probes": spec.num_probes,
               "num_steps": spec.num_steps, "min_node": float(live.min()),
               "max_node": float(live.max()), "trace": tr.value, "trace_stderr": tr.stderr,
               "seconds": seconds, "spectrum": spec.to_dict()}
    if out is not None:
        atomic_write_text(out / "spectrum.json", json.dumps(payload) + "\n")
        plot_spectrum(spec, path=out / "spectrum.png")
    text = (f"Hessian spectrum (SLQ, {spec.num_probes} probes × {spec.num_steps} steps), "
            f"D = {spec.dim}\n  nodes in [{float(live.min()):.4g}, {float(live.max()):.4g}]\n"
            f"  trace ≈ {tr.value:.4g} ± {tr.stderr:.2g}\n  {seconds:.1f} s")
    if out is not None:
        text += f"\n  wrote {out / 'spectrum.json'} and {out / 'spectrum.png'}"
    payload.pop("spectrum") if not args.json else None
    _emit(args, payload, text)
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from ._io import atomic_write_text
    from .plots import plot_crossing, plot_spectrum
    from .prediction import estimate_eps, predict_sparsity

    cfg, model, train, _ = _common_setup(args)
    out = _out_dir(args)
    if "l1" in cfg:
        _train(args, cfg, model, train)
    kwargs: dict[str, Any] = {}
    if "negative" in cfg:
        kwargs["negative"] = cfg["negative"]
    eps, eps_source = cfg.get("eps"), "user"
    if eps is None:  # the std of the mini-batch training losses, over the training batches
        eps, eps_source = estimate_eps(model, _loss_fn(), train), "batch_loss_std"
    pred = predict_sparsity(model, _loss_fn(), _hessian_data(train, cfg), eps=eps,
                            num_steps=cfg.get("num_steps", 80), num_probes=cfg.get("num_probes", 10),
                            seed=cfg.get("seed", 0), **kwargs)
    pred.eps_source = eps_source
    payload = {"command": "predict", **pred.to_dict()}
    if out is not None:
        atomic_write_text(out / "prediction.json", json.dumps(payload) + "\n")
        plot_crossing(pred, path=out / "crossing.png")
        if hasattr(pred.spectrum, "density"):
            plot_spectrum(pred.spectrum, path=out / "spectrum.png")
    text = (f"predicted critical sparsity {pred.sparsity:.4f} (kept fraction {pred.kept_fraction:.4f})"
            f"\n  kinematic window [{pred.lower:.4f}, {pred.upper:.4f}], D = {pred.dim}, "
            f"eps = {pred.eps:.4g}, R(s*) = {pred.radius:.4g}")
    _emit(args, payload, text)
    return EXIT_OK


def _train(args: argparse.Namespace, cfg: dict, model: Any, train: Any) -> None:
    from .training import train_l1

    _log(args, f"training with l1 = {cfg['l1']} for {cfg.get('epochs', 30)} epochs")
    train_l1(model, _loss_fn(), train, l1=float(cfg["l1"]), epochs=cfg.get("epochs", 30),
             lr=float(cfg.get("lr", 0.05)), seed=cfg.get("seed", 0),
             progress=not (args.json or args.quiet))


def _parse_sparsities(cfg: dict) -> list[float]:
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
    if not values or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in values):
        raise UsageError(f"sparsities must be numbers in [0, 1], got {values!r}")
    return [float(v) for v in values]


def cmd_sweep(args: argparse.Namespace) -> int:
    from .threshold import sweep
    from .training import evaluate_accuracy

    cfg, model, train, test = _common_setup(args)
    out = _out_dir(args)
    grid = _parse_sparsities(cfg)
    if "l1" in cfg:
        _train(args, cfg, model, train)
    path = None if out is None else out / "sweep.jsonl"
    points = sweep(model, lambda m: evaluate_accuracy(m, test), grid, path=path,
                   progress=not (args.json or args.quiet))
    payload = {"command": "sweep", "points": [list(p) for p in points],
               "path": None if path is None else str(path)}
    text = "sparsity  test accuracy\n" + "\n".join(f"{s:8.4f}  {a:.4f}" for s, a in points)
    if path is not None:
        text += f"\nwrote {path}"
    _emit(args, payload, text)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from .pipeline import validate

    cfg, model, train, test = _common_setup(args)
    if "l1" not in cfg and not cfg.get("checkpoint"):
        raise UsageError("validate needs trained weights (--checkpoint PATH) or --l1 to train first")
    out = _out_dir(args)
    kwargs: dict[str, Any] = {}
    if "negative" in cfg:
        kwargs["predict_kwargs"] = {"negative": cfg["negative"]}
    report = validate(
        model, _loss_fn(), train, test, l1=cfg.get("l1"), epochs=cfg.get("epochs", 30),
        lr=float(cfg.get("lr", 0.05)), eps=cfg.get("eps"), num_steps=cfg.get("num_steps", 80),
        num_probes=cfg.get("num_probes", 10), seed=cfg.get("seed", 0), out=out,
        refit=cfg.get("refit"), tolerance=float(cfg.get("tolerance", 0.0)),
        resolution=float(cfg.get("resolution", 1e-3)), hessian_data=_hessian_data(train, cfg),
        progress=not (args.json or args.quiet), **kwargs,
    )
    _emit(args, {"command": "validate", **report.to_dict()}, report.summary())
    return EXIT_OK


# ------------------------------------------------------------------------------------------
# the parser
# ------------------------------------------------------------------------------------------
class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _common(p: argparse.ArgumentParser, model_options: bool = True) -> None:
    g = p.add_argument_group("common options")
    if model_options:
        g.add_argument("--model", help="model name (phasetrans.models.build_model), default digits_mlp")
        g.add_argument("--data", help="dataset name (phasetrans.data.load_dataset), default digits")
        g.add_argument("--data-root", dest="data_root", metavar="DIR",
                       help="local folder with the dataset files (mnist, cifar10, ...); nothing is downloaded")
        g.add_argument("--config", metavar="FILE",
                       help="JSON or TOML file of settings (keys: " + ", ".join(sorted(CONFIG_KEYS)) +
                       "); command-line options override it")
        g.add_argument("--checkpoint", metavar="PATH",
                       help="trained weights (a state dict), loaded with torch.load(weights_only=True)")
        g.add_argument("--device", help="torch device, e.g. cpu or cuda (default cpu)")
        g.add_argument("--batch-size", dest="batch_size", type=int, help="training batch size (default 128)")
    g.add_argument("--seed", type=int, default=None if model_options else 0, help="random seed")
    g.add_argument("--out", metavar="DIR", help="directory for JSON results and PNG figures")
    g.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads (default: torch's; the demo uses 1, fastest for its small "
                        "model and safe on a busy machine)")
    g.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    g.add_argument("--quiet", action="store_true", help="no progress bars or messages on stderr")


def _slq_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("spectrum options")
    g.add_argument("--num-steps", dest="num_steps", type=int, help="Lanczos steps per probe (default 80)")
    g.add_argument("--num-probes", dest="num_probes", type=int, help="SLQ probes (default 10)")
    g.add_argument("--hessian-batch-size", dest="hessian_batch_size", type=int,
                   help="batch size for Hessian products (default 2048; same H, faster)")


def _train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (only with --l1)")
    g.add_argument("--l1", type=float, help="train first with this l1 penalty on the prunable weights")
    g.add_argument("--epochs", type=int, help="training epochs (default 30)")
    g.add_argument("--lr", type=float, help="learning rate (default 0.05)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phasetrans",
        description="Predict the critical sparsity of one-shot magnitude pruning from the Hessian "
                    "spectrum and the weight magnitudes, and check it by pruning.",
        epilog="examples:\n"
               "  phasetrans demo --out out/demo\n"
               "  phasetrans predict --model digits_mlp --data digits --checkpoint w.pt --json\n"
               "  phasetrans validate --data mnist --data-root ~/data/mnist --model lenet --l1 1e-4\n"
               "exit codes: 0 ok, 1 failure while running, 2 bad usage or input",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "demo", formatter_class=_Formatter,
        help="the whole pipeline on the embedded digits data (about 10 s on 2 CPU cores)",
        description="Train a digits MLP (64-64-32-10) with an l1 penalty, predict its critical "
                    "sparsity, measure the one-shot threshold on the test set, print both, and "
                    "write report.json and PNG figures to --out.",
        epilog="examples:\n  phasetrans demo --out out/demo\n  phasetrans demo --quick --json > r.json",
    )
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (fewer epochs and SLQ steps)")
    _common(p, model_options=False)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "spectrum", formatter_class=_Formatter, help="Hessian spectral density by SLQ",
        description="Stochastic Lanczos quadrature of the dataset-level Hessian of the training "
                    "loss with respect to the prunable weights; writes spectrum.json/.png to --out.",
        epilog="examples:\n  phasetrans spectrum --checkpoint w.pt --out out/spec\n"
               "  phasetrans spectrum --model lenet --data mnist --data-root ~/data --num-steps 100 --json",
    )
    _common(p)
    _slq_options(p)
    p.set_defaults(func=cmd_spectrum)

    p = sub.add_parser(
        "predict", formatter_class=_Formatter, help="predicted critical sparsity s* = Φ(R(s*))",
        description="Predict the critical sparsity of the (trained) model: SLQ spectrum, "
                    "magnitude curve, root of s = Φ(R(s)), kinematic window. With --l1 the model "
                    "is trained first.",
        epilog="examples:\n  phasetrans predict --checkpoint w.pt --out out/pred\n"
               "  phasetrans predict --l1 1e-3 --epochs 30 --json\n"
               "  phasetrans predict --config run.toml --eps 0.01",
    )
    _common(p)
    _slq_options(p)
    _train_options(p)
    p.add_argument("--eps", type=float, help="loss tolerance (default: std of mini-batch losses)")
    p.add_argument("--negative", choices=("abs", "drop", "flat"), help="negative eigenvalues (default abs)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "sweep", formatter_class=_Formatter, help="test accuracy along a grid of sparsities",
        description="One-shot global magnitude pruning at each sparsity of a grid, test accuracy "
                    "of each; with --out the results go to sweep.jsonl as they come (resumable).",
        epilog="examples:\n  phasetrans sweep --checkpoint w.pt --num-points 41\n"
               "  phasetrans sweep --checkpoint w.pt --sparsities 0.5,0.7,0.8,0.9 --out out/sw --json",
    )
    _common(p)
    _train_options(p)
    p.add_argument("--sparsities", help="comma-separated sparsities in [0, 1]")
    p.add_argument("--num-points", dest="num_points", type=int, help="evenly spaced points in [0, 1] (default 21)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "validate", formatter_class=_Formatter, help="predict, measure, compare (report and figures)",
        description="phasetrans.validate on a model: (train with --l1), predict, measure the "
                    "one-shot threshold on the test set (and after --refit steps), accuracy/loss "
                    "curve, per-layer kept fractions; report.json and figures to --out.",
        epilog="examples:\n  phasetrans validate --checkpoint w.pt --out out/val\n"
               "  phasetrans validate --l1 1e-3 --epochs 30 --refit 50 --json\n"
               "  phasetrans validate --config run.json --tolerance 0.005",
    )
    _common(p)
    _slq_options(p)
    _train_options(p)
    p.add_argument("--eps", type=float, help="loss tolerance (default: std of mini-batch losses)")
    p.add_argument("--negative", choices=("abs", "drop", "flat"), help="negative eigenvalues (default abs)")
    p.add_argument("--tolerance", type=float, help="accuracy drop allowed at the threshold (default 0)")
    p.add_argument("--refit", type=int, help="also measure after this many re-fit steps on the kept support")
    p.add_argument("--resolution", type=float, help="sparsity grid step of the threshold search (default 1e-3)")
    p.set_defaults(func=cmd_validate)
    return parser


def _version() -> str:
    from . import __version__

    return f"phasetrans {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``phasetrans`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on bad usage
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    import matplotlib

    matplotlib.use("Agg")
    import torch

    saved_threads = torch.get_num_threads()
    threads = getattr(args, "threads", None)
    if threads is None and args.command == "demo":
        threads = 1
    if threads is not None:
        if threads < 1:
            print(f"phasetrans {args.command}: error: --threads must be >= 1, got {threads}",
                  file=sys.stderr)
            return EXIT_USAGE
        torch.set_num_threads(threads)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"phasetrans {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError) as exc:
        print(f"phasetrans {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"phasetrans {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - report any runtime failure with exit code 1
        print(f"phasetrans {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        torch.set_num_threads(saved_threads)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
