"""The subcommands: ``demo``, ``spectrum``, ``predict``, ``sweep``, ``validate`` (one ``cmd_*``
each, taking the parsed arguments and returning the exit code), and how they print: one JSON
document on standard output with ``--json``, readable text otherwise; messages go to standard
error."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._timing import Stopwatch
from .config import EXIT_OK, UsageError, check_bounds
from .guards import SWEEP_LOG, run_identity
from .inputs import (
    checkpoint_file,
    common_setup,
    hessian_data,
    loss_fn,
    metric,
    out_dir,
    parse_sparsities,
)

__all__ = [
    "DEMO", "DEMO_QUICK", "cmd_demo", "cmd_spectrum", "cmd_predict", "cmd_sweep", "cmd_validate", "cmd_plot",
    "model_shape", "emit", "log",
]

# The demo recipe: digits MLP 64-64-32-10 trained with an l1 penalty strong enough that most
# weights go to ~0 (the regime of the theory: R(s) stays small up to high sparsity). Measured over
# seeds 0-3: predicted - measured = +0.7, +2.1, +0.8, +1.3 points (l1 = 1e-3 for 30 epochs gave
# 2.5 to 32 points: the zero-tolerance accuracy threshold on 500 test samples is then noisy).
DEMO = {
    "hidden": (64, 32), "l1": 3e-3, "epochs": 60, "lr": 0.05, "batch_size": 128,
    "num_steps": 80, "num_probes": 10,
}
DEMO_QUICK = {**DEMO, "num_steps": 30, "num_probes": 4}  # same training, cheaper spectrum


def slq_budget(cfg: dict) -> dict[str, int | None]:
    """``num_steps`` / ``num_probes`` of a prediction: as given, else the adaptive budget
    (``None``; resumable too with ``--checkpoint-dir``)."""
    return {"num_steps": cfg.get("num_steps"), "num_probes": cfg.get("num_probes")}


def emit(args: argparse.Namespace, payload: dict, text: str) -> None:
    """Print the result: ``payload`` as JSON with ``--json``, else ``text``."""
    from .._io import to_jsonable

    if args.json:
        print(json.dumps(to_jsonable(payload), indent=2))
    else:
        print(text)


def log(args: argparse.Namespace, message: str) -> None:
    """A progress message on standard error (none with ``--json`` or ``--quiet``)."""
    if not args.json and not args.quiet:
        print(message, file=sys.stderr, flush=True)


def model_shape(model: Any) -> str:
    from ..params import prunable_parameters

    return f"({sum(p.numel() for p in prunable_parameters(model).values())} prunable weights)"


def _progress(args: argparse.Namespace) -> bool | None:
    """Progress bars on standard error: none with ``--quiet``, else when it is a terminal."""
    return False if args.quiet else None


def cmd_demo(args: argparse.Namespace) -> int:
    import torch
    from torch import nn

    from .. import data, models
    from ..report.validate import validate

    recipe = DEMO_QUICK if args.quick else DEMO
    check_bounds({"seed": args.seed})
    out = out_dir(args)
    clock = Stopwatch()
    train, test = data.digits(batch_size=recipe["batch_size"], seed=args.seed)
    torch.manual_seed(args.seed)
    model = models.digits_mlp(hidden=recipe["hidden"])
    log(args, f"demo: digits MLP {model_shape(model)}, l1 = {recipe['l1']}, "
              f"{recipe['epochs']} epochs, SLQ {recipe['num_probes']}×{recipe['num_steps']}")
    report = validate(
        model, nn.CrossEntropyLoss(), train, test, l1=recipe["l1"], epochs=recipe["epochs"],
        lr=recipe["lr"], num_steps=recipe["num_steps"], num_probes=recipe["num_probes"],
        seed=args.seed, out=out, hessian_data=hessian_data(train, {}), progress=_progress(args),
        spread=True,
    )
    wall = clock.elapsed
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
    emit(args, payload, text)
    return EXIT_OK


def cmd_spectrum(args: argparse.Namespace) -> int:
    from .._io import atomic_write_text
    from ..linalg.hessian import HessianOperator
    from ..linalg.slq import slq
    from ..report.plots import plot_spectrum

    cfg, model, train, _ = common_setup(args, can_train=False)
    out = out_dir(args)
    clock = Stopwatch()
    with clock("slq"):
        H = HessianOperator(model, loss_fn(cfg), hessian_data(train, cfg))
        spec = slq(H, num_steps=cfg.get("num_steps", 80), num_probes=cfg.get("num_probes", 10),
                   seed=cfg.get("seed", 0), checkpoint=checkpoint_file(cfg, "slq.pt"),
                   progress=_progress(args))
    seconds = clock.timings["slq"]
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
    if not args.json:
        payload.pop("spectrum")
    emit(args, payload, text)
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    import dataclasses

    from .._io import atomic_write_text
    from ..predict import estimate_eps, predict_sparsity
    from ..report.plots import plot_crossing, plot_spectrum

    cfg, model, train, _ = common_setup(args, can_train=True)
    out = out_dir(args)
    loss = loss_fn(cfg)
    if "l1" in cfg:
        _train(args, cfg, model, train)
    kwargs: dict[str, Any] = {}
    if "negative" in cfg:
        kwargs["negative"] = cfg["negative"]
    eps, eps_source = cfg.get("eps"), "user"
    if eps is None:  # the std of the mini-batch training losses, over the training batches
        eps, eps_source = estimate_eps(model, loss, train), "batch_loss_std"
    checkpoint = checkpoint_file(cfg, "slq.pt")
    pred = predict_sparsity(model, loss, hessian_data(train, cfg), eps=eps,
                            **slq_budget(cfg), seed=cfg.get("seed", 0),
                            checkpoint=checkpoint, progress=_progress(args), **kwargs)
    pred = dataclasses.replace(pred, eps_source=eps_source)
    payload = {"command": "predict", **pred.to_dict()}
    oneshot = None
    if pred.applies is False:  # the paper's s* is not the one-shot threshold here: estimate that
        from ..oneshot import predict_oneshot

        oneshot = predict_oneshot(model, loss_fn(), hessian_data(train, cfg), eps=pred.eps)
        payload["oneshot"] = oneshot.to_dict()
    if out is not None:
        atomic_write_text(out / "prediction.json", json.dumps(payload) + "\n")
        plot_crossing(pred, path=out / "crossing.png")
        if hasattr(pred.spectrum, "density"):
            plot_spectrum(pred.spectrum, path=out / "spectrum.png")
    text = (f"predicted critical sparsity {pred.sparsity:.4f} (kept fraction {pred.kept_fraction:.4f})"
            f"\n  kinematic window [{pred.lower:.4f}, {pred.upper:.4f}], D = {pred.dim}, "
            f"eps = {pred.eps:.4g}, R(s*) = {pred.radius:.4g}")
    if pred.applies is not None:
        text += f"\n  theory {'applies' if pred.applies else 'does NOT apply'} to this network"
        text += "".join(f"\n  - {w}" for w in pred.warnings)
    if oneshot is not None:
        text += (f"\none-shot estimate (pt.predict_oneshot, training loss within {oneshot.details['tau']:.3g}): "
                 f"{oneshot.sparsity:.4f}")
    emit(args, payload, text)
    return EXIT_OK


def _train(args: argparse.Namespace, cfg: dict, model: Any, train: Any) -> None:
    from ..train import train_l1

    log(args, f"training with l1 = {cfg['l1']} for {cfg.get('epochs', 30)} epochs")
    train_l1(model, loss_fn(cfg), train, l1=float(cfg["l1"]), epochs=cfg.get("epochs", 30),
             lr=float(cfg.get("lr", 0.05)), seed=cfg.get("seed", 0), progress=_progress(args),
             checkpoint=checkpoint_file(cfg, "train.pt"))


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..prune.sweep import SweepLogMismatch, sweep

    cfg, model, train, test = common_setup(args, can_train=True)
    out = out_dir(args)
    grid = parse_sparsities(cfg)
    evaluate, name = _sweep_metric(cfg, test)
    if "l1" in cfg:
        _train(args, cfg, model, train)
    path = None if out is None else out / SWEEP_LOG
    criterion = cfg.get("criterion", "magnitude")
    # the log header records what defines the numbers: a rerun on other weights, model, data,
    # seed or metric is refused instead of printing the previous run's results
    metadata = None if path is None else {**run_identity(cfg, model, test), "metric": name}
    try:
        points = sweep(model, evaluate, grid, path=path, metadata=metadata,
                       progress=_progress(args), criterion=criterion, data=train,
                       loss_fn=loss_fn(cfg))
    except SweepLogMismatch as exc:
        legend = (" (weights_sha256 is the hash of the weights pruned: another --checkpoint, "
                  "--model, --seed or training)" if "weights_sha256" in str(exc) else "")
        raise UsageError(f"{exc} (e.g. another --out){legend}") from None
    payload = {"command": "sweep", "metric": name, "criterion": criterion,
               "points": [list(p) for p in points],
               "path": None if path is None else str(path)}
    text = f"sparsity  test {name}\n" + "\n".join(f"{s:8.4f}  {a:.4f}" for s, a in points)
    if path is not None:
        text += f"\nwrote {path}"
    emit(args, payload, text)
    return EXIT_OK


def _sweep_metric(cfg: dict, test: Any) -> tuple[Any, str]:
    """``(model -> float, name)`` of ``--metric`` on the test batches (resolved as
    ``validate(metric=...)`` resolves it)."""
    from ..report.validate_args import check_metric_arg

    chosen = metric(cfg)
    fn = check_metric_arg(chosen, loss_fn(cfg))["metric"]
    name = chosen if isinstance(chosen, str) else cfg["metric"]
    return (lambda m: float(fn(m, test))), name


def cmd_validate(args: argparse.Namespace) -> int:
    from ..report.validate import validate

    cfg, model, train, test = common_setup(args)
    if "l1" not in cfg and not cfg.get("checkpoint"):
        raise UsageError("validate needs trained weights (--checkpoint PATH) or --l1 to train first")
    out = out_dir(args)
    predict_kwargs: dict[str, Any] = {}
    if "negative" in cfg:
        predict_kwargs["negative"] = cfg["negative"]
    kwargs: dict[str, Any] = {"predict_kwargs": predict_kwargs}
    if cfg.get("checkpoint_dir") is not None:  # resumable training and SLQ
        predict_kwargs["checkpoint"] = checkpoint_file(cfg, "slq.pt")
        if "l1" in cfg:
            kwargs["train_kwargs"] = {"checkpoint": checkpoint_file(cfg, "train.pt")}
    report = validate(
        model, loss_fn(cfg), train, test, l1=cfg.get("l1"), epochs=cfg.get("epochs", 30),
        lr=float(cfg.get("lr", 0.05)), eps=cfg.get("eps"),
        **slq_budget(cfg), seed=cfg.get("seed", 0), out=out,
        refit=cfg.get("refit"), tolerance=float(cfg.get("tolerance", 0.0)),
        resolution=float(cfg.get("resolution", 1e-3)), hessian_data=hessian_data(train, cfg),
        progress=_progress(args), criterion=cfg.get("criterion", "magnitude"), metric=metric(cfg),
        spread=bool(cfg.get("spread", False)), **kwargs,
    )
    emit(args, {"command": "validate", **report.to_dict()}, report.summary())
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    """``phasetrans plot FILE``: the figures of a saved result, redrawn (``plots.plot_saved``)."""
    from pathlib import Path

    from ..report.plots import plot_saved

    src = Path(args.file)
    if not src.is_file():
        raise UsageError(f"FILE must be an existing JSON file, got {src}")
    out = Path(args.out) if args.out is not None else src.resolve().parent
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a directory, got an existing file: {out}")
    written = plot_saved(src, out)
    payload = {"command": "plot", "source": str(src), "figures": [str(p) for p in written]}
    emit(args, payload, f"wrote {len(written)} figures to {out}: " + ", ".join(p.name for p in written))
    return EXIT_OK
