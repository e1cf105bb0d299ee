"""End-to-end ``pt.predict_sparsity`` (its defaults: adaptive budget, trace from the spectrum)
against the number of weights D and the number of training samples N, on CPU, with wall time and peak memory.

Model: MLP ``d_in-h-h-10`` (h chosen for each D), briefly trained (``--epochs`` of Adam) on a
synthetic teacher task (Gaussian inputs, labels of a random linear teacher), batches of 250.
Every point runs in a fresh subprocess; peak memory is that process's ``ru_maxrss``
(``resource.getrusage``), wall time covers the prediction only (training is printed apart).

Run: python bench/scale.py --dims 1e4,1e5,3e5,1e6 --samples 1000   # time against D
     python bench/scale.py --dims 1e5 --samples 250,500,1000,2000   # time against N
     python bench/scale.py ... --plot docs/figures                    # draws scale_vs_dim.png / scale_vs_samples.png
     [--threads 2] [--epochs 2] [--device cpu|cuda] [--omp-wait-policy X] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import _omp  # noqa: E402  (bench/: the --omp-wait-policy flag, read before torch is imported)

_omp.apply_from_argv()

D_IN = 784


def hidden_for(dim: int) -> int:
    """h with D = 784 h + h² + 10 h ≈ dim."""
    b = D_IN + 10
    return max(1, int(round((-b + math.sqrt(b * b + 4 * dim)) / 2)))


def child(dim: int, samples: int, threads: int, epochs: int, device: str = "cpu") -> dict:
    import resource

    import torch
    from torch import nn

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import phasetrans as pt

    torch.set_num_threads(threads)
    h = hidden_for(dim)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(samples, D_IN, generator=g)
    y = (X @ torch.randn(D_IN, 10, generator=g)).argmax(1)
    data = [(X[i : i + 250].to(device), y[i : i + 250].to(device)) for i in range(0, samples, 250)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D_IN, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                          nn.Linear(h, 10)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in data:
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    t_train = time.perf_counter() - t
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    pred = pt.predict_sparsity(model, nn.functional.cross_entropy, data)
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    b = pred.details["budget"]
    return {"dim": pred.dim, "hidden": h, "samples": samples, "threads": threads,
            "train_s": t_train, "predict_s": wall, "peak_rss_mib": rss / 1024,
            "rss_before_predict_mib": rss0 / 1024, "products": pred.products,
            "probes": b["num_probes"], "steps": b["num_steps"], "settled": b["settled"],
            "sparsity": pred.sparsity, "timings": pred.timings, "device": device,
            "peak_gpu_mib": gpu}


def plot(rows: list[dict], out_dir: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    for key, label, name in (("dim", "weights D", "scale_vs_dim.png"),
                             ("samples", "training samples N", "scale_vs_samples.png")):
        other = "samples" if key == "dim" else "dim"
        groups: dict = {}
        for r in rows:
            groups.setdefault(r[other], []).append(r)
        groups = {k: v for k, v in groups.items() if len({r[key] for r in v}) > 1}
        if not groups:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120, layout="constrained")
        for k, v in sorted(groups.items()):
            v = sorted(v, key=lambda r: r[key])
            ax.loglog([r[key] for r in v], [r["predict_s"] for r in v], "o-",
                      label=f"{other} = {k}")
            for r in v:
                ax.annotate(f"{r['products']}", (r[key], r["predict_s"]), fontsize=7,
                            textcoords="offset points", xytext=(3, -9))
        ax.set_xlabel(label)
        ax.set_ylabel("predict_sparsity wall time (s)")
        ax.set_title("end to end on CPU (labels: column products)", fontsize=9)
        ax.legend(fontsize=8)
        fig.savefig(os.path.join(out_dir, name))
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _omp.add_argument(parser)
    parser.add_argument("--dims", default="1e4,1e5,1e6")
    parser.add_argument("--samples", default="1000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None, help="directory for the figures")
    parser.add_argument("--from-json", default=None, help="only draw the figures from these rows")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dim, samples = (int(float(x)) for x in args.child.split(","))
        print(json.dumps(child(dim, samples, args.threads, args.epochs, args.device)))
        return
    if args.from_json:
        rows = json.load(open(args.from_json))
    else:
        rows = []
        for dim in (int(float(x)) for x in args.dims.split(",")):
            for n in (int(float(x)) for x in args.samples.split(",")):
                up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
                out = subprocess.run(
                    [sys.executable, __file__, "--child", f"{dim},{n}", "--threads", str(args.threads),
                     "--epochs", str(args.epochs), "--device", args.device], capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r["uptime"] = up
                rows.append(r)
                print(f"D = {r['dim']:>9,d} (h = {r['hidden']}), N = {n:5d}: predict {r['predict_s']:8.1f} s, "
                      f"peak RSS {r['peak_rss_mib']:7.0f} MiB, {r['products']} products "
                      f"({r['probes']} x {r['steps']}, settled {r['settled']}), s* = {r['sparsity']:.4f}; "
                      f"train {r['train_s']:.1f} s | {up}", flush=True)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
