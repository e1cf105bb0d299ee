"""The one-shot study (issue 15), from the repository root::

    python -m studies.oneshot [--out docs] [--weights DIR] [--quick] [--only NAME,...]
                              [--num-steps 30] [--num-probes 3] [--refit-steps 0] [--rerender]

trains (or loads from ``--weights DIR/<case>.pt``; trained nets are saved there) every case of
:mod:`.cases`, measures it (:mod:`.measure`), and writes ``OUT/ONESHOT.md``, ``OUT/oneshot.json``
and ``OUT/figures/oneshot_*.png``. ``oneshot.json`` is rewritten after every case; a rerun with
the same ``--out`` skips the cases already there (``--fresh`` to redo them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from phasetrans._io import atomic_write_json, atomic_write_text, read_json
from phasetrans.report.plots import plot_measurement_floor, plot_oneshot_study

from .cases import HELDOUT, HELDOUT2, L1S, SCHEDULES, case_name, load_or_train
from .measure import curve_of, measure_case, spread_of
from .render import render_markdown, summarize

__all__ = ["all_cases", "main", "run_study"]

QUICK = [("mlp", 0.0, "cos"), ("mlp", 3e-3, "cos")]


def all_cases() -> list[tuple[str, float, str]]:
    """(arch, l1, schedule): every calibration arch × l1 with the cosine schedule, mlp / wide /
    lenet also with the constant one (LeNet without 3e-3: it collapses), the held-out nets (cosine)."""
    out = [(a, l1, "cos") for a in ("mlp", "wide", "lenet", "teacher", "big") for l1 in L1S]
    out += [(a, l1, "const") for a in ("mlp", "wide", "lenet") for l1 in L1S if not (a == "lenet" and l1 >= 3e-3)]
    out += [(a, l1, "cos") for a in HELDOUT + HELDOUT2 for l1 in L1S]
    return out


def draw_figures(res: dict, out: Path) -> None:
    figdir = Path(out) / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    plot_oneshot_study(res["cases"], path=figdir / "oneshot.png")
    res["figures"] = ["figures/oneshot.png"]
    if any("spread" in c for c in res["cases"]):
        plot_measurement_floor(res["cases"], path=figdir / "oneshot_floor.png")
        res["figures"].append("figures/oneshot_floor.png")


def run_study(out: str | Path = "docs", weights: str | None = None, cases=None, num_steps: int = 80,
              num_probes: int = 10, refit_steps: int = 0, fresh: bool = False, log=print,
              command: str = "") -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "oneshot.json"
    old = {} if fresh or not path.exists() else {c["name"]: c for c in read_json(path).get("cases", [])}
    res = {"command": command, "machine": f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU",
           "settings": {"num_steps": num_steps, "num_probes": num_probes, "refit_steps": refit_steps,
                        "schedules": SCHEDULES, "weights": weights}, "cases": []}
    t0 = time.perf_counter()
    for arch, l1, sched in cases or all_cases():
        name = case_name(arch, l1, sched)
        if name in old:
            res["cases"].append(old[name])
            continue
        t = time.perf_counter()
        model, train, hdata, test, trained_s = load_or_train(arch, l1, sched, weights)
        r = measure_case(name, model, train, hdata, test, num_steps=num_steps, num_probes=num_probes,
                         refit_steps=refit_steps)
        r.update(arch=arch, l1=l1, schedule=sched, heldout=arch in HELDOUT + HELDOUT2,
                 group="heldout2" if arch in HELDOUT2 else "heldout" if arch in HELDOUT else "calibration",
                 trained_seconds=trained_s,
                 seconds=time.perf_counter() - t)
        res["cases"].append(r)
        atomic_write_json(path, res)
        log(f"[oneshot] {name}: D={r['dim']} acc={r['dense_acc']:.3f} paper={r['paper']:.3f} "
            f"applies={r['applies']} ({r['ratio']:.2f}) est={r['estimate']:.3f} measured={r['measured']:.3f} "
            f"window={r['window']} ({r['seconds']:.1f} s)")
    res["seconds"] = time.perf_counter() - t0
    # compute time of every case, also of cases resumed from an earlier (or parallel) run
    res["case_seconds"] = sum(c.get("seconds", 0.0) for c in res["cases"])
    res["summary"] = summarize(res["cases"])
    draw_figures(res, out)
    atomic_write_json(path, res)
    atomic_write_text(out / "ONESHOT.md", render_markdown(res))
    return res


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studies.oneshot",
                                description="The paper's prediction, its applicability test and the one-shot estimator "
                                            "against measured one-shot thresholds (issue 15).")
    p.add_argument("--out", default="docs")
    p.add_argument("--weights", default=None, help="directory of trained state dicts <case>.pt (read and written)")
    p.add_argument("--quick", action="store_true", help="two digits MLPs only")
    p.add_argument("--only", default=None, help="comma-separated case names")
    p.add_argument("--num-steps", type=int, default=80, help="SLQ steps (halved for D >= 15000)")
    p.add_argument("--num-probes", type=int, default=10, help="SLQ probes (halved for D >= 15000)")
    p.add_argument("--refit-steps", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true", help="redo the cases already in OUT/oneshot.json")
    p.add_argument("--rerender", action="store_true", help="only redraw and rewrite from OUT/oneshot.json")
    p.add_argument("--reassess", action="store_true",
                   help="recompute every case's spike mass (from --weights) and `applies` with the current rule, "
                        "then rerender (no SLQ, no pruning)")
    p.add_argument("--spread", action="store_true",
                   help="recompute every case's measurement window and bootstrap spread (pt.threshold_spread on the "
                        "test and training sets, from --weights), then rerender (no SLQ)")
    return p


def reassess(cases: list[dict], weights: str) -> None:
    """``spike_mass``, ``applies`` and ``warnings`` of every case with the package's current
    applicability rule, from the stored ΔL₂ terms, ε, ``s*`` and the trained weights."""
    from phasetrans.theory.applicability import assess_applicability, spike_mass
    from phasetrans.theory.magnitude import weights_tensor

    for c in cases:
        model = load_or_train(c["arch"], c["l1"], c["schedule"], weights, load_only=True)[0]
        w = weights_tensor(model)
        verdict = assess_applicability(c["first_order"], c["second_order"], c["eps"], c["paper"],
                                       spike_mass(w), c["implied_l1"])
        c.update(spike_mass=verdict.spike_mass, applies=verdict.applies, warnings=list(verdict.warnings))


def respread(cases: list[dict], weights: str, log=print) -> None:
    """``spread`` (and the window and accuracy curve it gives) of every case, from the trained weights."""
    for c in cases:
        t = time.perf_counter()
        model, _, hdata, test, _ = load_or_train(c["arch"], c["l1"], c["schedule"], weights, load_only=True)
        grid, c["spread"] = spread_of(model, hdata, test)
        c["curve"] = curve_of(grid, c["spread"])
        c["window"] = c["curve"]["window"]
        c.setdefault("timings", {})["spread"] = time.perf_counter() - t
        log(f"[oneshot] {c['name']}: spread in {time.perf_counter() - t:.1f} s")


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    out = Path(a.out)
    if a.rerender or a.reassess or a.spread:
        res = read_json(out / "oneshot.json")
        if a.reassess:
            reassess(res["cases"], a.weights)
        if a.spread:
            torch.set_num_threads(a.threads)
            respread(res["cases"], a.weights)
            res["spread_command"] = "python -m studies.oneshot " + " ".join(sys.argv[1:] if argv is None else argv)
        res["summary"] = summarize(res["cases"])
        draw_figures(res, out)
        atomic_write_json(out / "oneshot.json", res)
        atomic_write_text(out / "ONESHOT.md", render_markdown(res))
        return 0
    torch.set_num_threads(a.threads)
    cases = QUICK if a.quick else all_cases()
    if a.only:
        names = set(a.only.split(","))
        cases = [c for c in all_cases() if case_name(*c) in names]
        if not cases:
            print(f"error: --only matched no case; known: {[case_name(*c) for c in all_cases()]}", file=sys.stderr)
            return 2
    command = "python -m studies.oneshot " + " ".join(sys.argv[1:] if argv is None else argv)
    run_study(out, a.weights, cases, a.num_steps, a.num_probes, a.refit_steps, a.fresh, command=command)
    return 0
