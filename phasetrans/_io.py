"""Crash-safe file writes and safe reads.

Every file phasetrans writes goes through :func:`atomic_write_bytes`: the bytes go to a temporary
file in the *same directory* (so the final ``os.replace`` is a rename within one file system),
are flushed and ``fsync``-ed, then the temporary file replaces the target with ``os.replace``
(atomic on POSIX and Windows) and the directory is ``fsync``-ed. A reader, or a run resumed after
``kill -9`` or a power cut, sees either the old file or the new one, never a torn one.

Reads of files that may come from elsewhere never run code: JSON through :mod:`json`, torch
files through ``torch.load(weights_only=True)`` (tensors and plain containers only), whose
refusal of a pickle that would import or call anything is turned into a clear ``ValueError``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "read_json",
    "safe_torch_load",
    "check_path",
    "fsync_dir",
]


def check_path(path: Any, name: str = "path") -> Path:
    """A ``str`` / ``os.PathLike`` path (not a directory), else ``TypeError`` / ``ValueError``."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path (str or os.PathLike), got {type(path).__name__}")
    p = Path(os.fspath(path))
    if str(p) == "" or p.name == "":
        raise ValueError(f"{name} must name a file, got {os.fspath(path)!r}")
    if p.is_dir():
        raise ValueError(f"{name} must be a file path, got the directory {str(p)!r}")
    return p


def fsync_dir(directory: str | os.PathLike) -> None:
    """``fsync`` a directory, so that a rename or a new file in it survives a power cut (best
    effort: silently skipped where directories cannot be opened, e.g. on Windows)."""
    with contextlib.suppress(OSError):  # not supported everywhere (e.g. Windows): best effort
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)




def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename).

    The parent directory is created if needed. On any failure the temporary file is removed and
    an existing ``path`` is left untouched. Returns the path.
    """
    p = check_path(path)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    directory = p.parent if str(p.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(x: Any, strict: bool = False) -> Any:
    """Plain JSON types for reports and result files: dicts (string keys), lists, numbers, strings,
    ``None``; tensors and arrays become lists, non-finite floats ``None`` (strict JSON has no
    NaN/inf), objects with ``to_dict()`` their dict, anything else its ``repr`` — or, with
    ``strict=True``, a ``TypeError``."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v, strict) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v, strict) for v in x]
    if isinstance(x, torch.Tensor):
        return to_jsonable(x.detach().cpu().tolist(), strict)
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist(), strict)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        x = float(x)
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, str):
        return x
    if hasattr(x, "to_dict"):
        return to_jsonable(x.to_dict(), strict)
    if strict:
        raise TypeError(f"{type(x).__name__} is not JSON-serialisable")
    return repr(x)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON (NaN/inf as ``null``), atomically; ``TypeError`` if ``obj``
    holds something JSON cannot represent."""
    try:
        text = json.dumps(to_jsonable(obj, strict=True), indent=indent, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"obj must be JSON-serialisable: {exc}") from None
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file (no code runs); ``ValueError`` naming the file if it is not JSON."""
    p = check_path(path)
    try:
        return json.loads(p.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"path: {str(p)!r} is not a valid JSON file: {exc}") from None


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` atomically. ``obj`` should hold only tensors and plain
    containers/scalars, so that :func:`safe_torch_load` can read it back."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def safe_torch_load(path: str | os.PathLike, name: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``.

    A file that would need to import or call anything to unpickle (a malicious or merely
    foreign pickle) is refused with a ``ValueError`` saying so; nothing in it runs. A truncated
    or corrupt file also gives ``ValueError``.
    """
    p = check_path(path, name)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{name}: refused to load {str(p)!r}: it is not a plain tensor file (unpickling it "
            f"would import or run code; only tensors and plain containers are allowed, "
            f"weights_only=True). Detail: {first}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"{name}: could not read {str(p)!r} (corrupt or not a torch file): {exc}") from None


def load_checkpoint(
    path: str | os.PathLike,
    kind: str,
    meta: dict[str, Any],
    caller: str,
    mismatch_hints: dict[tuple[str, ...], str] | None = None,
) -> dict[str, Any] | None:
    """The dict a run of ``caller`` saved at ``path`` (``None`` when there is no file), loaded
    with :func:`safe_torch_load`. ``ValueError`` when the file is not of this ``kind``, or when
    its recorded arguments differ from ``meta`` (the message lists each difference, or is the
    hint in ``mismatch_hints`` for exactly that sorted tuple of differing keys). ``caller`` is
    the name with its article, e.g. ``"an slq"``."""
    if not os.path.exists(path):
        return None
    obj = safe_torch_load(path, "checkpoint")
    name = caller.split(" ", 1)[1]
    if not isinstance(obj, dict) or obj.get("kind") != kind or "meta" not in obj:
        raise ValueError(f"checkpoint: {str(path)!r} is not a phasetrans {name} checkpoint")
    if obj["meta"] != meta:
        diff = sorted(k for k in set(meta) | set(obj["meta"]) if obj["meta"].get(k) != meta.get(k))
        hint = (mismatch_hints or {}).get(tuple(diff))
        if hint is not None:
            raise ValueError(f"checkpoint: {str(path)!r} {hint}")
        detail = ", ".join(f"{k}: file {obj['meta'].get(k)!r} vs call {meta.get(k)!r}" for k in diff)
        raise ValueError(
            f"checkpoint: {str(path)!r} was written by {caller} call with different arguments "
            f"({detail}); use another path or delete the file"
        )
    return obj
