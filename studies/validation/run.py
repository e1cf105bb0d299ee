"""Validation study: the predicted critical sparsity against measured pruning thresholds.

The paper's central table (Zhang, Zhang, Sun, Liu, NeurIPS 2024, arXiv:2306.05857: predicted vs
actual critical sparsity) redone on what runs here, reproducibly, from the repository root::

    python -m studies.validation [--out docs] [--quick] [--cases NAME,...] [--seed 0]
                                 [--device cpu|cuda] [--data-root DIR]

writes ``OUT/VALIDATION.md`` (tables, figures, discussion), ``OUT/validation.json`` (every number)
and ``OUT/figures/validation_*.png``, atomically. The cases are in :mod:`.cases`, the ablations
(on the 64-64-32-10 digits MLP) in :mod:`.ablations`, the markdown in :mod:`.render`; the
figures are drawn by :mod:`phasetrans.report.plots`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phasetrans._io import atomic_write_json, atomic_write_text, read_json
from phasetrans._timing import Stopwatch
from phasetrans.report.plots import plot_case_curve, plot_l1_ablation, plot_prediction_scatter

from .ablations import quadratic_bruteforce_study, run_ablations
from .cases import NET_CASES, QUAD_CASES, run_network_case, run_quadratic_case
from .render import discussion, fmt, render_markdown

__all__ = ["QUICK_CASES", "FULL_CASES", "summarize", "draw_figures", "run_study", "main"]

QUICK_CASES = ["quad_l1like_powerlaw", "mlp_l1_5e-3"]
FULL_CASES = [*QUAD_CASES, *[n for n, c in NET_CASES.items() if not c.get("gpu")]]


def _abs_diff_points(cases: list[dict], key: str) -> np.ndarray:
    """``|predicted − case[key]|`` in points over the cases where ``key`` is known."""
    return np.array([abs(c["predicted"] - c[key]) * 100 for c in cases if c.get(key) is not None])


def summarize(cases: list[dict]) -> dict:
    """Median and max |predicted − measured| in points over the target set and over all CPU cases
    (against one-shot and against the re-fit loss criterion), and whether the target (median ≤ 1,
    max ≤ 3 over the target set) is met."""
    tgt = [c for c in cases if c["in_target"]]
    cpu = [c for c in cases if not c["config"].get("gpu")]
    d, dr = _abs_diff_points(tgt, "measured_oneshot"), _abs_diff_points(tgt, "measured_refit_loss")
    da, dar = _abs_diff_points(cpu, "measured_oneshot"), _abs_diff_points(cpu, "measured_refit_loss")

    def median(x):
        return float(np.median(x)) if x.size else None

    def largest(x):
        return float(x.max()) if x.size else None

    return {"target_cases": [c["name"] for c in tgt],
            "all_cpu_cases": [c["name"] for c in cpu],
            "all_cpu_median_abs_diff_points": median(da),
            "all_cpu_max_abs_diff_points": largest(da),
            "all_cpu_median_abs_diff_refit_points": median(dar),
            "all_cpu_max_abs_diff_refit_points": largest(dar),
            "median_abs_diff_points": median(d),
            "max_abs_diff_points": largest(d),
            "median_abs_diff_refit_points": median(dr),
            "max_abs_diff_refit_points": largest(dr),
            "target_met": bool(d.size and np.median(d) <= 1.0 and d.max() <= 3.0)}


def draw_figures(res: dict, out: Path) -> None:
    """``OUT/figures/validation_{scatter,curve,l1}.png`` (the last two when their data is
    there); their paths relative to ``out`` go to ``res["figures"]``."""
    results = res["cases"]
    figdir = Path(out) / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    res["figures"] = []
    plot_prediction_scatter([r for r in results if r["in_target"]] or results,
                            path=figdir / "validation_scatter.png")
    res["figures"].append("figures/validation_scatter.png")
    curve_case = next((r for r in results if r["name"] == res.get("curve_case")), None)
    if curve_case:
        plot_case_curve(curve_case, path=figdir / "validation_curve.png")
        res["figures"].append("figures/validation_curve.png")
    if res.get("ablations"):
        plot_l1_ablation(res["ablations"]["l1"], path=figdir / "validation_l1.png")
        res["figures"].append("figures/validation_l1.png")


def _check_cases(names: list[str], device: str) -> None:
    unknown = [n for n in names if n not in QUAD_CASES and n not in NET_CASES]
    if unknown:
        raise ValueError(f"cases: unknown case(s) {unknown}; known: {[*QUAD_CASES, *NET_CASES]}")
    if any(NET_CASES.get(n, {}).get("gpu") for n in names) and device != "cuda":
        raise ValueError("gpu_* cases need --device cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available on this machine")


def _run_case(name: str, quick: bool, seed: int, device: str, data_root: str | None) -> dict:
    if name in QUAD_CASES:
        return run_quadratic_case(name, dim=200 if quick else 400, seed=seed,
                                  num_steps=40 if quick else 80, num_probes=5 if quick else 10)
    dev = device if NET_CASES[name].get("gpu") else "cpu"
    return run_network_case(name, seed=seed, quick=quick, device=dev, data_root=data_root,
                            refit_steps=50 if quick else 100, num_steps=40 if quick else 80,
                            num_probes=5 if quick else 10, keep_model=(name == "mlp_l1_3e-3"))


def _run_cases(names: list[str], quick: bool, seed: int, device: str, data_root: str | None,
               log) -> list[dict]:
    results: list[dict] = []
    for n in names:
        clock = Stopwatch()
        r = _run_case(n, quick, seed, device, data_root)
        r["seconds"] = clock.elapsed
        log(f"[validation] {n}: D={r['dim']} predicted={r['predicted']:.3f} one-shot={r['measured_oneshot']:.3f} "
            f"refit={fmt(r['measured_refit'])} ({r['seconds']:.1f} s)")
        results.append(r)
    return results


def _write(res: dict, out: Path) -> None:
    """``validation.json`` and ``VALIDATION.md`` (with the discussion already in ``res``)."""
    atomic_write_json(out / "validation.json", res)
    atomic_write_text(out / "VALIDATION.md", render_markdown(res))


def run_study(out: str | Path = "docs", quick: bool = False, cases: list[str] | None = None, seed: int = 0,
              device: str = "cpu", data_root: str | None = None, ablations: bool | None = None,
              bruteforce: bool | None = None, log=print, command: str | None = None) -> dict:
    """Run the cases (``cases``, or the quick or full set), the ablations and the brute-force
    check, and write the results to ``out``. ``command``: the command line recorded in the
    results (default: this call)."""
    clock = Stopwatch()
    out = Path(out)
    names = cases or (QUICK_CASES if quick else FULL_CASES)
    _check_cases(names, device)
    ablations = (not quick and cases is None) if ablations is None else ablations
    bruteforce = (cases is None) if bruteforce is None else bruteforce
    results = _run_cases(names, quick, seed, device, data_root, log)
    res: dict[str, Any] = {
        "command": command or f"run_study(out={str(out)!r}, quick={quick}, cases={cases}, seed={seed})",
        "seed": seed, "quick": quick, "device": device,
        "machine": f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU",
    }
    bases = [r for r in results if r["name"] == "mlp_l1_3e-3"]
    if ablations and bases:
        with clock("ablations"):
            res["ablations"] = run_ablations(bases[0], seed, {r["name"]: r for r in results if r["kind"] == "network"},
                                             quick=quick)
        log(f"[validation] ablations ({clock.timings['ablations']:.1f} s)")
    if bruteforce:
        with clock("bruteforce"):
            res["bruteforce"] = quadratic_bruteforce_study(num=3 if quick else 20, dim=8 if quick else 10, seed=seed)
        res["bruteforce"]["seconds"] = clock.timings["bruteforce"]
    for r in results:
        for k in [k for k in r if k.startswith("_")]:
            del r[k]
    res["cases"] = results
    res["summary"] = summarize(results)
    nets = [r for r in results if r["kind"] == "network" and r.get("curve")]
    curve_case = next((r for r in nets if r["name"] == "mlp_l1_3e-3"), nets[0] if nets else None)
    res["curve_case"] = curve_case["name"] if curve_case else None
    draw_figures(res, out)
    res["seconds"] = clock.elapsed
    res["discussion"] = discussion(res)
    _write(res, out)
    log(f"[validation] wrote {out / 'VALIDATION.md'} and {out / 'validation.json'} "
        f"({res['seconds']:.0f} s; median |pred - one-shot| = {fmt(res['summary']['median_abs_diff_points'], 2)} "
        f"points, max = {fmt(res['summary']['max_abs_diff_points'], 2)})")
    return res


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studies.validation",
                                description="Predicted vs measured critical sparsity: the validation study.")
    p.add_argument("--out", default="docs", help="directory for VALIDATION.md, validation.json, figures/")
    p.add_argument("--quick", action="store_true", help="two small cases, shorter training (≲ 60 s)")
    p.add_argument("--cases", default=None, help=f"comma-separated case names: {', '.join([*QUAD_CASES, *NET_CASES])}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--data-root", default=None, help="local CIFAR-10 files for the gpu_* cases")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument("--rerender", action="store_true",
                   help="only rewrite OUT/VALIDATION.md from OUT/validation.json (no runs)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m studies.validation``; returns the exit code (2: bad cases or device). With
    ``argv=None`` (the command line) the results record the command as typed."""
    a = _parser().parse_args(argv)
    if a.rerender:
        res = read_json(Path(a.out) / "validation.json")
        draw_figures(res, Path(a.out))
        res["discussion"] = discussion(res)
        _write(res, Path(a.out))
        return 0
    torch.set_num_threads(a.threads)
    cases = None if a.cases is None else [c.strip() for c in a.cases.split(",") if c.strip()]
    command = None if argv is not None else "python -m studies.validation " + " ".join(sys.argv[1:])
    try:
        run_study(a.out, quick=a.quick, cases=cases, seed=a.seed, device=a.device, data_root=a.data_root,
                  ablations=False if a.no_ablations else None, command=command)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
