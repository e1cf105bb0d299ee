"""Memory checks before large allocations: what is available, and a clear error when a request
cannot fit (instead of a raw allocator error after the work started)."""

from __future__ import annotations

import os

import torch

__all__ = ["available_bytes", "human_bytes", "check_fits"]


def available_bytes(device: torch.device) -> int:
    """Memory a new allocation can use: the GPU's free memory, or ``MemAvailable``."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 8 << 30


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_fits(nbytes: int, what: str, names: str, device: torch.device | str = "cpu") -> None:
    """``ValueError`` naming the arguments ``names`` when ``nbytes`` (what a request allocates,
    described by ``what``) exceeds the memory available on ``device`` (and on the CPU, where
    probes are drawn)."""
    device = torch.device(device)
    available = available_bytes(device)
    if device.type != "cpu":
        available = min(available, available_bytes(torch.device("cpu")))
    if nbytes > available:
        raise ValueError(
            f"{names}: {what} would need {human_bytes(nbytes)}, more than the "
            f"{human_bytes(available)} of available memory; lower {names}"
        )
