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
import stat
import tempfile
import threading
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
    "check_regular_file",
    "open_regular",
    "new_file_mode",
    "check_out_dir",
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


_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symbolic link"}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_regular_file(path: str | os.PathLike, name: str = "path", follow_symlinks: bool = True) -> bool:
    """``True`` when ``path`` is a regular file, ``False`` when nothing is there; ``ValueError``
    naming ``name`` for anything else (a FIFO, which would block a read forever, a socket, a
    device, a directory; with ``follow_symlinks=False`` also a symbolic link). Checked with
    ``stat``/``lstat``, so nothing is opened."""
    try:
        st = os.stat(path) if follow_symlinks else os.lstat(path)
    except FileNotFoundError:
        if follow_symlinks and os.path.islink(path):
            raise ValueError(f"{name}: {os.fspath(path)!r} is a dangling symbolic link") from None
        return False
    if stat.S_ISLNK(st.st_mode):
        raise ValueError(f"{name}: {os.fspath(path)!r} is a symbolic link; refusing to open it through the "
                         f"link (it could damage the link's target): pass the real path")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{name}: {os.fspath(path)!r} is {_kind(st.st_mode)}, not a regular file; refusing to use it")
    return True


def open_regular(path: str | os.PathLike, flags: int, name: str = "path", follow_symlinks: bool = True,
                 mode: int = 0o666) -> int:
    """``os.open`` of a regular file, never blocking and never through a symbolic link unless
    ``follow_symlinks``: the path is checked first (:func:`check_regular_file`), then opened with
    ``O_NONBLOCK`` (a FIFO swapped in meanwhile cannot block) and, without ``follow_symlinks``,
    ``O_NOFOLLOW`` (a link swapped in meanwhile fails), and the open file is checked again with
    ``fstat``. With ``O_CREAT`` a new file gets ``mode & ~umask``, as with :func:`open`.
    Returns the file descriptor (blocking mode restored); ``ValueError`` naming ``name``."""
    check_regular_file(path, name, follow_symlinks)
    extra = os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        extra |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | extra, mode)
    except OSError:
        if os.path.islink(path) and not follow_symlinks:
            raise ValueError(f"{name}: {os.fspath(path)!r} is a symbolic link; refusing to open it through the "
                             f"link (it could damage the link's target)") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{name}: {os.fspath(path)!r} is {_kind(st.st_mode)}, not a regular file; refusing "
                             f"to use it")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the system says it (Linux
    ``/proc/self/status``); elsewhere set and restored under a lock."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode(path: str | os.PathLike | None = None) -> int:
    """The permission bits :func:`open` would leave on ``path``: those of the regular file already
    there, else ``0o666 & ~umask``."""
    if path is not None:
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                return stat.S_IMODE(st.st_mode)
    return 0o666 & ~_umask()


def check_out_dir(out: Any, name: str = "out", files: tuple[str, ...] = ()) -> Path:
    """An output directory checked before any work: ``TypeError`` unless a path; ``ValueError``
    naming ``name`` when it exists and is not a directory, cannot be created, is not writable
    (a temporary file is created and removed in it), or when one of ``files`` in it exists as a
    directory or as anything but a regular file. Creates the directory; returns it."""
    if isinstance(out, bool) or not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"{name} must be a directory path (str or os.PathLike), got {type(out).__name__}")
    p = Path(os.fspath(out))
    if str(p) == "":
        raise ValueError(f"{name} must name a directory, got ''")
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name} must be a directory, got an existing file: {str(p)!r}")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".phasetrans-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{name}: cannot write to the directory {str(p)!r} ({exc.strerror or exc}); "
                         f"choose another {name}") from None
    for file in files:
        target = p / file
        if os.path.lexists(target):
            st = os.stat(target) if os.path.exists(target) else os.lstat(target)
            if not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode):
                raise ValueError(f"{name}: {str(target)!r} is {_kind(st.st_mode)}; it would be replaced by "
                                 f"the output file {file!r}: move it or choose another {name}")
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
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(p)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise ValueError(f"path: {str(p)!r} is {_kind(st.st_mode)}; refusing to replace it")
    directory = p.parent if str(p.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    mode = new_file_mode(p)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{p.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # mkstemp creates 0600: give the mode open() would
            os.fchmod(fd, mode)
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
    """Parse a JSON file (no code runs); ``ValueError`` naming the file if it is not JSON or not
    a regular file."""
    p = check_path(path)
    fd = open_regular(p, os.O_RDONLY, "path")  # a FIFO would block: refused
    with os.fdopen(fd, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8"))
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
    try:  # a FIFO or a device would block or never end: refused before torch reads anything
        fd = open_regular(p, os.O_RDONLY, name)
    except OSError as exc:
        raise ValueError(f"{name}: could not read {str(p)!r}: {exc}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
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
    if not check_regular_file(path, "checkpoint"):
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
