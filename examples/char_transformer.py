"""A modern architecture end to end: a tiny character-level transformer, predicted and pruned.

The text ships with Python itself (no download): the Zen of Python (the ``this`` module, stored
rot13-encoded) followed by the source of a few standard-library modules, read through
``inspect``. A causal transformer (``nn.TransformerEncoderLayer``: multi-head attention on
``F.scaled_dot_product_attention``, pre-norm, GELU) learns next-character prediction with
AdamW and an l1 penalty on its prunable weights (the LOMP recipe's penalty, Zhang et al.,
NeurIPS 2024). Then:

1. ``pt.predict_sparsity`` predicts the critical sparsity of one-shot global magnitude pruning
   from the Hessian spectrum of the training loss (attention projections included: the Hessian
   products run on the math attention kernel, which has a double backward);
2. ``pt.find_threshold`` prunes for real and finds the largest sparsity at which (a) the
   training loss stays within ``L(w*) + ε`` (the event the theory predicts) and (b) the
   held-out next-character accuracy stays within 1 point of the dense model's;
3. the three numbers are printed side by side.

The batches are dicts, as a HuggingFace-style loader yields them (``input_ids``, ``labels``),
read through ``batch_fn``. The default run costs about five minutes of one CPU core (from
per-step timings: training ~3.5, the spectrum ~1.5; 10 minutes of wall time on a shared,
heavily loaded 2-core machine); seed 0 on torch 2.13 (CPU) gave: held-out accuracy 0.493, predicted
critical sparsity 0.478 (window [0.444, 0.512], ε = 0.210), loss threshold 0.400, accuracy
threshold (1 point) 0.250.

    python examples/char_transformer.py            # about five minutes on one CPU core
    python examples/char_transformer.py --tiny     # seconds (what the test runs)
"""

from __future__ import annotations

import argparse
import codecs
import importlib.util
import inspect
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

import phasetrans as pt

MODULES = ("textwrap", "string", "fnmatch", "shlex", "glob", "bisect")


@dataclass(frozen=True)
class Settings:
    """Everything the run depends on (the defaults are the few-minute run)."""

    context: int = 48
    width: int = 48
    heads: int = 4
    layers: int = 2
    chars: int = 60_000
    steps: int = 1500
    batch: int = 32
    lr: float = 3e-3
    l1: float = 2e-5
    hessian_sequences: int = 256
    num_steps: int = 40
    num_probes: int = 4
    seed: int = 0


TINY = Settings(context=16, width=16, heads=2, layers=1, chars=4_000, steps=60, batch=16,
                hessian_sequences=32, num_steps=8, num_probes=2)


def python_text(chars: int) -> str:
    """The Zen of Python (decoded from the ``this`` module's source without importing it, which
    would print it) followed by the source of a few standard-library modules."""
    spec = importlib.util.find_spec("this")
    source = open(spec.origin, encoding="utf-8").read()
    encoded = source[source.index('"""') + 3 : source.rindex('"""')]
    parts = [codecs.decode(encoded, "rot13")]
    for name in MODULES:
        parts.append(inspect.getsource(importlib.import_module(name)))
    text = "\n".join(parts)
    return "".join(c for c in text if c.isascii())[:chars]  # a small vocabulary


class CharTransformer(nn.Module):
    """Token + position embeddings, causal pre-norm transformer layers, a linear head; the
    logits of every position, flattened to ``(batch · context, vocab)``."""

    def __init__(self, vocab: int, s: Settings):
        super().__init__()
        self.embed = nn.Embedding(vocab, s.width)
        self.position = nn.Parameter(0.02 * torch.randn(s.context, s.width))
        layer = nn.TransformerEncoderLayer(s.width, s.heads, 2 * s.width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, s.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(s.width)
        self.head = nn.Linear(s.width, vocab)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(s.context))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        h = self.embed(input_ids) + self.position[:t]
        h = self.blocks(h, mask=self.causal[:t, :t], is_causal=True)
        return self.head(self.norm(h)).reshape(-1, self.head.out_features)


def batch_fn(batch: dict) -> tuple[dict, torch.Tensor]:
    """A dict batch -> (model keyword arguments, targets): every position's next character."""
    return {"input_ids": batch["input_ids"]}, batch["labels"].reshape(-1)


def dict_batches(ids: torch.Tensor, context: int, batch: int) -> list[dict]:
    """Non-overlapping windows of ``context + 1`` characters as dict batches."""
    n = (len(ids) - 1) // context
    windows = torch.stack([ids[i * context : i * context + context + 1] for i in range(n)])
    return [{"input_ids": w[:, :-1], "labels": w[:, 1:]}
            for w in windows.split(batch)]


def train(model: nn.Module, batches: list[dict], s: Settings, loss_fn: nn.Module) -> list[float]:
    """AdamW with a cosine schedule, plus ``l1 · Σ|w|`` over the prunable weights."""
    prunable = list(pt.prunable_parameters(model).values())
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / 50) * 0.5 * (1 + math.cos(math.pi * k / s.steps)))
    g = torch.Generator().manual_seed(s.seed)
    losses = []
    model.train()
    for _ in range(s.steps):
        inputs, targets = batch_fn(batches[int(torch.randint(len(batches), (1,), generator=g))])
        loss = loss_fn(model(**inputs), targets)
        total = loss + s.l1 * sum(p.abs().sum() for p in prunable)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def run(s: Settings = Settings(), verbose: bool = True) -> dict[str, Any]:
    """Train, predict, prune, compare; returns the numbers (also printed when ``verbose``)."""
    say = print if verbose else (lambda *a, **k: None)
    started = time.perf_counter()
    torch.manual_seed(s.seed)
    text = python_text(s.chars)
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text])
    cut = int(0.9 * len(ids))
    train_batches = dict_batches(ids[:cut], s.context, s.batch)
    test_batches = dict_batches(ids[cut:], s.context, s.batch)
    hessian_batches = train_batches[: max(2, s.hessian_sequences // s.batch)]
    loss_fn = nn.CrossEntropyLoss()

    model = CharTransformer(len(vocab), s)
    D = sum(p.numel() for p in pt.prunable_parameters(model).values())
    say(f"text: {len(text)} characters, vocabulary {len(vocab)}; model: "
        f"{sum(p.numel() for p in model.parameters())} parameters, D = {D} prunable")
    losses = train(model, train_batches, s, loss_fn)
    test_acc = pt.evaluate_accuracy(model, test_batches, batch_fn=batch_fn)
    train_loss = pt.evaluate_loss(model, loss_fn, hessian_batches, batch_fn=batch_fn)
    say(f"trained {s.steps} steps: last loss {sum(losses[-20:]) / len(losses[-20:]):.3f}, "
        f"held-out next-character accuracy {test_acc:.3f}")

    prediction = pt.predict_sparsity(
        model, loss_fn, hessian_batches, batch_fn=batch_fn, num_steps=s.num_steps,
        num_probes=s.num_probes, seed=s.seed, trace_method=None, bootstrap=0,
    )
    say(f"predicted critical sparsity {prediction.sparsity:.3f} "
        f"(window [{prediction.lower:.3f}, {prediction.upper:.3f}], ε = {prediction.eps:.4f})")

    def accuracy(m: nn.Module) -> float:
        return pt.evaluate_accuracy(m, test_batches, batch_fn=batch_fn)

    loss_threshold = pt.find_loss_threshold(model, loss_fn, hessian_batches, prediction.eps,
                                            resolution=0.01, batch_fn=batch_fn)
    acc_threshold = pt.find_threshold(model, accuracy, baseline=test_acc, tolerance=0.01,
                                      resolution=0.01)
    say(f"pruned: L(w^s) <= L(w*) + ε up to s = {loss_threshold.sparsity:.3f}; held-out "
        f"accuracy within 1 point up to s = {acc_threshold.sparsity:.3f}")
    result = {
        "settings": asdict(s), "prunable": D, "vocabulary": len(vocab),
        "test_accuracy": test_acc, "train_loss": train_loss, "eps": prediction.eps,
        "predicted": prediction.sparsity, "window": [prediction.lower, prediction.upper],
        "loss_threshold": loss_threshold.sparsity, "accuracy_threshold": acc_threshold.sparsity,
        "seconds": time.perf_counter() - started,
    }
    say(f"prediction − loss threshold: {prediction.sparsity - loss_threshold.sparsity:+.3f}; "
        f"total {result['seconds']:.0f} s")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long run (the test's)")
    parser.add_argument("--steps", type=int, default=None, help="training steps")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    s = TINY if args.tiny else Settings()
    if args.steps is not None:
        s = Settings(**{**asdict(s), "steps": args.steps})
    result = run(s)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
