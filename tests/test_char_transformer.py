"""examples/char_transformer.py (issue 17): the modern-architecture example runs end to end with
its tiny settings, on text that ships with Python, and its numbers mean what they say."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

import phasetrans as pt

PATH = Path(__file__).resolve().parents[1] / "examples" / "char_transformer.py"


def _example():
    spec = importlib.util.spec_from_file_location("char_transformer_example", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_text_is_pythons_own(capsys):
    ex = _example()
    import this  # prints the Zen; its text is stored rot13-encoded

    capsys.readouterr()
    zen = "".join(this.d.get(c, c) for c in this.s)
    text = ex.python_text(10**9)
    assert text.startswith(zen + "\n")
    assert ex.python_text(500) == text[:500]


def test_tiny_run_end_to_end(tmp_path):
    ex = _example()
    out = tmp_path / "result.json"
    result = ex.main(["--tiny", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert 0.0 <= result["window"][0] <= result["predicted"] <= result["window"][1] <= 1.0
    assert 0.0 <= result["loss_threshold"] <= 1.0 and 0.0 <= result["accuracy_threshold"] <= 1.0
    assert result["eps"] > 0 and result["test_accuracy"] > 1.0 / result["vocabulary"]
    # the prunable set of the transformer: attention projections, feed-forward, head; no
    # embedding, position table or normalisation
    model = ex.CharTransformer(result["vocabulary"], ex.TINY)
    names = list(pt.prunable_parameters(model))
    assert names == ["blocks.layers.0.self_attn.in_proj_weight",
                     "blocks.layers.0.self_attn.out_proj.weight",
                     "blocks.layers.0.linear1.weight", "blocks.layers.0.linear2.weight",
                     "head.weight"]
    assert result["prunable"] == sum(p.numel() for p in pt.prunable_parameters(model).values())
    batch = ex.dict_batches(torch.arange(40) % result["vocabulary"], ex.TINY.context, 2)[0]
    inputs, targets = ex.batch_fn(batch)
    assert model(**inputs).shape == (targets.numel(), result["vocabulary"])
