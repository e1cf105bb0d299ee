"""The argument parser of ``phasetrans``: one function per subcommand, adding its parser with its
help, description, examples and options (shared option groups: common, spectrum, training)."""

from __future__ import annotations

import argparse
from typing import Any

from . import commands
from .config import CONFIG_KEYS

__all__ = ["build_parser"]

_NEGATIVE = ("abs", "drop", "flat")
_CRITERIA = ("magnitude", "fisher_taylor", "obs", "layer_adaptive")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _common(p: argparse.ArgumentParser, model_options: bool = True, random_init: bool = False) -> None:
    g = p.add_argument_group("common options")
    if model_options:
        g.add_argument("--model", help="model name (phasetrans.models.build_model), default digits_mlp; "
                       "or your own, package.module:factory (called with the config's model_kwargs; "
                       "--checkpoint is loaded into it)")
        g.add_argument("--loss", help="cross_entropy (default), mse, or package.module:factory "
                       "(called with no arguments, returns loss(outputs, targets), batch mean)")
        g.add_argument("--data", help="dataset name (phasetrans.data.load_dataset), default digits")
        g.add_argument("--data-root", dest="data_root", metavar="DIR",
                       help="local folder with the dataset files (mnist, cifar10, ...); nothing is downloaded")
        g.add_argument("--config", metavar="FILE",
                       help="JSON or TOML file of settings (keys: " + ", ".join(sorted(CONFIG_KEYS)) +
                       "); command-line options override it")
        g.add_argument("--checkpoint", metavar="PATH",
                       help="trained weights (a state dict), loaded with torch.load(weights_only=True)")
        if random_init:
            g.add_argument("--random-init", dest="random_init", action="store_true",
                           help="run on a random initialisation on purpose (otherwise --checkpoint, "
                                "or --l1 where the command trains, is required)")
        g.add_argument("--device", help="torch device, e.g. cpu or cuda (default cpu)")
        g.add_argument("--batch-size", dest="batch_size", type=int, help="training batch size (default 128)")
    g.add_argument("--seed", type=int, default=None if model_options else 0, help="random seed")
    g.add_argument("--out", metavar="DIR", help="directory for JSON results and PNG figures")
    g.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads (default: the cores this process may use less the load "
                        "average, or torch's when OMP_NUM_THREADS is set; the demo uses 1, fastest for "
                        "its small model). The command also sets OMP_WAIT_POLICY=PASSIVE unless set")
    g.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bars or messages on stderr (bars show only when stderr is a terminal)")


def _slq_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("spectrum options")
    g.add_argument("--num-steps", dest="num_steps", type=int, help="Lanczos steps per probe (default: the adaptive budget of predict "
                   "and validate, settled to 0.1 point, resumable with --checkpoint-dir; 80 for spectrum)")
    g.add_argument("--num-probes", dest="num_probes", type=int, help="SLQ probes (default: adaptive as --num-steps; 10 for spectrum)")
    g.add_argument("--hessian-batch-size", dest="hessian_batch_size", type=int,
                   help="batch size for Hessian products (default 2048; same H, faster)")


def _checkpoint_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint-dir", dest="checkpoint_dir", metavar="DIR",
                   help="keep resumable state here (training epochs, SLQ steps): run the same "
                        "command again to resume an interrupted run, to the same result")


def _metric(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", help="held-out metric, higher is better: accuracy, neg_loss (minus the "
                   "test loss), or package.module:function(model, data) -> float (default: accuracy "
                   "with --loss cross_entropy, else neg_loss)")


def _train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (only with --l1)")
    g.add_argument("--l1", type=float, help="train first with this l1 penalty on the prunable weights")
    g.add_argument("--epochs", type=int, help="training epochs (default 30)")
    g.add_argument("--lr", type=float, help="learning rate (default 0.05)")


def _criterion_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--criterion", choices=_CRITERIA,
                   help="what one-shot pruning removes (default magnitude: global magnitude "
                        "pruning); fisher_taylor, obs (with its weight update) and "
                        "layer_adaptive are prepared once on the training data")


def _add_demo(sub: Any) -> None:
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
    p.set_defaults(func=commands.cmd_demo)


def _add_spectrum(sub: Any) -> None:
    p = sub.add_parser(
        "spectrum", formatter_class=_Formatter, help="Hessian spectral density by SLQ",
        description="Stochastic Lanczos quadrature of the dataset-level Hessian of the training "
                    "loss with respect to the prunable weights; writes spectrum.json/.png to --out.",
        epilog="examples:\n  phasetrans spectrum --checkpoint w.pt --out out/spec\n"
               "  phasetrans spectrum --model lenet --data mnist --data-root ~/data --num-steps 100 "
               "--checkpoint lenet.pt --json\n"
               "  phasetrans spectrum --model mypkg.nets:make_net --checkpoint w.pt --checkpoint-dir ckpt\n"
               "  phasetrans spectrum --random-init --num-steps 30   # an untrained model, on purpose",
    )
    _common(p, random_init=True)
    _slq_options(p)
    _checkpoint_dir(p)
    p.set_defaults(func=commands.cmd_spectrum)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict", formatter_class=_Formatter, help="predicted critical sparsity s* = Φ(R(s*))",
        description="Predict the critical sparsity of the (trained) model: SLQ spectrum, "
                    "magnitude curve, root of s = Φ(R(s)), kinematic window. With --l1 the model "
                    "is trained first.",
        epilog="examples:\n  phasetrans predict --checkpoint w.pt --out out/pred\n"
               "  phasetrans predict --l1 1e-3 --epochs 30 --json\n"
               "  phasetrans predict --config run.toml --eps 0.01\n"
               "  phasetrans predict --l1 1e-3 --epochs 200 --checkpoint-dir ckpt  # rerun to resume",
    )
    _common(p, random_init=True)
    _slq_options(p)
    _train_options(p)
    _checkpoint_dir(p)
    p.add_argument("--eps", type=float, help="loss tolerance (default: std of mini-batch losses)")
    p.add_argument("--negative", choices=_NEGATIVE, help="negative eigenvalues (default abs)")
    p.set_defaults(func=commands.cmd_predict)


def _add_sweep(sub: Any) -> None:
    p = sub.add_parser(
        "sweep", formatter_class=_Formatter, help="test accuracy along a grid of sparsities",
        description="One-shot global magnitude pruning at each sparsity of a grid, test accuracy "
                    "of each; with --out the results go to sweep.jsonl as they come (resumable).",
        epilog="examples:\n  phasetrans sweep --checkpoint w.pt --num-points 41\n"
               "  phasetrans sweep --checkpoint w.pt --sparsities 0.5,0.7,0.8,0.9 --out out/sw --json\n"
               "  phasetrans sweep --checkpoint w.pt --criterion obs --num-points 11",
    )
    _common(p, random_init=True)
    _train_options(p)
    _criterion_option(p)
    _metric(p)
    p.add_argument("--sparsities", help="comma-separated sparsities in [0, 1]")
    p.add_argument("--num-points", dest="num_points", type=int, help="evenly spaced points in [0, 1] (default 21)")
    p.set_defaults(func=commands.cmd_sweep)


def _add_validate(sub: Any) -> None:
    p = sub.add_parser(
        "validate", formatter_class=_Formatter, help="predict, measure, compare (report and figures)",
        description="phasetrans.validate on a model: (train with --l1), predict, measure the "
                    "one-shot threshold on the test set (and after --refit steps), accuracy/loss "
                    "curve, per-layer kept fractions; report.json and figures to --out.",
        epilog="examples:\n  phasetrans validate --checkpoint w.pt --out out/val\n"
               "  phasetrans validate --l1 1e-3 --epochs 30 --refit 50 --json\n"
               "  phasetrans validate --config run.json --tolerance 0.005\n"
               "  phasetrans validate --model mypkg.nets:regressor --loss mse --checkpoint w.pt",
    )
    _common(p)
    _slq_options(p)
    _train_options(p)
    _checkpoint_dir(p)
    _metric(p)
    p.add_argument("--eps", type=float, help="loss tolerance (default: std of mini-batch losses)")
    p.add_argument("--negative", choices=_NEGATIVE, help="negative eigenvalues (default abs)")
    p.add_argument("--tolerance", type=float, help="drop of the metric allowed at the threshold (default 0)")
    p.add_argument("--refit", type=int, help="also measure after this many re-fit steps on the kept support")
    p.add_argument("--resolution", type=float, help="sparsity grid step of the threshold search (default 1e-3)")
    _spread_option(p)
    _criterion_option(p)
    p.set_defaults(func=commands.cmd_validate)


def _spread_option(p: Any) -> None:
    p.add_argument("--spread", action="store_true", default=None,
                   help="also measure how precisely the test set measures the threshold (bootstrap "
                        "interval and error floor; ~200 extra pruned passes over the test set)")


def _add_plot(sub: Any) -> None:
    p = sub.add_parser(
        "plot", formatter_class=_Formatter, help="redraw the figures of a saved result",
        description="Redraw every figure from a saved result: report.json (validate, demo), "
                    "prediction.json (predict) or spectrum.json (spectrum); the same PNG files "
                    "the run wrote, into --out (default: the folder of FILE).",
        epilog="examples:\n  phasetrans plot out/val/report.json\n"
               "  phasetrans plot out/pred/prediction.json --out figs --json",
    )
    p.add_argument("file", metavar="FILE", help="a report.json, prediction.json or spectrum.json")
    p.add_argument("--out", metavar="DIR", help="directory for the PNG figures (default: FILE's folder)")
    p.add_argument("--json", action="store_true", help="print the files written as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no messages on stderr")
    p.set_defaults(func=commands.cmd_plot)


def _version() -> str:
    from .._version import __version__

    return f"phasetrans {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The ``phasetrans`` parser with its subcommands (each sets ``func``, its ``cmd_*``)."""
    parser = argparse.ArgumentParser(
        prog="phasetrans",
        description="Predict the critical sparsity of one-shot magnitude pruning from the Hessian "
                    "spectrum and the weight magnitudes, and check it by pruning.",
        epilog="examples:\n"
               "  phasetrans demo --out out/demo\n"
               "  phasetrans predict --model digits_mlp --data digits --checkpoint w.pt --json\n"
               "  phasetrans validate --data mnist --data-root ~/data/mnist --model lenet --l1 1e-4\n"
               "exit codes: 0 ok, 1 failure while running, 2 bad usage or input, 130 interrupted, "
               "143 terminated (SIGTERM)",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_demo, _add_spectrum, _add_predict, _add_sweep, _add_validate, _add_plot):
        add(sub)
    return parser
