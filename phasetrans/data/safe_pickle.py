"""Loading pickles that may come from elsewhere without running code: a restricted unpickler that
resolves only numpy-array reconstruction and builtin containers (the CIFAR "python version"
batch files are such pickles)."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["safe_load_pickle", "UnsafePickleError"]


def _numpy_pickle_callables() -> dict[tuple[str, str], Any]:
    reconstruct = np.array(0).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct
    frombuffer = np.arange(2).__reduce_ex__(5)[0]  # numpy(._)core.numeric._frombuffer
    import _codecs

    allowed: dict[tuple[str, str], Any] = {}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    # Python 3 pickles bytes at protocol < 3 as _codecs.encode(str, "latin1")
    allowed[("_codecs", "encode")] = _codecs.encode
    for mod in ("builtins", "__builtin__"):
        for name, obj in (("dict", dict), ("list", list), ("tuple", tuple), ("bytes", bytes),
                          ("bytearray", bytearray), ("str", str), ("int", int), ("float", float)):
            allowed[(mod, name)] = obj
    return allowed


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that references a global outside the allow-list (it would run code)."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy-array reconstruction and builtin containers."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _numpy_pickle_callables()

    def find_class(self, module: str, name: str) -> Any:
        assert self._allowed is not None
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {self._source}: it references {module}.{name}, which would run "
                "code on loading; only numpy arrays and builtin containers are allowed (is this "
                "really a CIFAR batch file?)"
            ) from None


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle holding only numpy arrays, dicts, lists, tuples, bytes, str and numbers.

    Any other global (a class or function, e.g. ``os.system`` in a malicious ``__reduce__``) is
    refused with :class:`UnsafePickleError` (a ``pickle.UnpicklingError``) before anything is called. Python 2 pickles are read
    with ``encoding="latin1"``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle file not found: {path}")
    raw = path.read_bytes()
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated / not a pickle at all
        raise ValueError(f"{path} is not a readable pickle ({type(exc).__name__}: {exc})") from exc
