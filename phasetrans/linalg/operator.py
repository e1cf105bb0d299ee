"""Linear operators: the base class, dense matrices, SciPy operators, and float64 products.

An operator has ``.dim``, ``.dtype``, ``.device`` and supports ``H @ v`` for ``v`` of shape
``(dim,)`` or ``(dim, K)`` (K columns served by one pass over the data), like curvlinops'
operators and SciPy's ``LinearOperator``. The spectral estimators (:mod:`phasetrans.linalg`)
accept any such operator, a dense symmetric tensor/array, a ``scipy.sparse.linalg.LinearOperator``
or a ``v -> H v`` function with a ``dim`` (:func:`as_operator`, :class:`FunctionOperator`). The
dataset-level Hessian is :class:`phasetrans.linalg.hessian.HessianOperator`.

The other way round, every operator follows SciPy's protocol: ``matvec``/``matmat`` (and the
``r`` versions, the operator being symmetric) take and return NumPy arrays when given them, and
``scipy.sparse.linalg.aslinearoperator(H)`` gives a SciPy operator for ``eigsh``, ``cg``, ...
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .._checks import check_int

__all__ = [
    "Operator", "DenseOperator", "ScipyOperator", "FunctionOperator", "as_operator", "all_finite",
    "apply", "guard",
]

_F64 = torch.float64


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite: one reduction (a sum is finite iff its terms are,
    unless finite terms overflow, which the elementwise check then settles); ``torch.isfinite``
    allocates and reads several full-size temporaries."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


class Operator:
    """Base class of symmetric linear operators on ``R^dim``.

    Subclasses implement :meth:`_matmat` for a ``(dim, K)`` tensor of dtype ``self.dtype`` on
    ``self.device``.
    """

    dim: int
    device: torch.device
    _dtype: torch.dtype

    @property
    def dtype(self) -> torch.dtype:
        """The products' torch dtype. To SciPy's ``aslinearoperator`` (which passes ``.dtype`` to
        ``np.dtype``) it answers the matching NumPy dtype, so that ``aslinearoperator(H)``
        works; everyone else gets the torch dtype."""
        caller = sys._getframe(1)
        if caller.f_code.co_name == "aslinearoperator" and str(
            caller.f_globals.get("__name__", "")
        ).startswith("scipy."):
            return numpy_dtype(self._dtype)
        return self._dtype

    @dtype.setter
    def dtype(self, value: torch.dtype) -> None:
        self._dtype = value

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, self.dim)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __matmul__(self, v: Any) -> torch.Tensor:
        """``H @ v`` for ``v`` of shape ``(dim,)`` or ``(dim, K)``; returns ``v``'s dtype."""
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"v must be a torch.Tensor or numpy array, got {type(v).__name__}")
        if v.dim() not in (1, 2) or v.shape[0] != self.dim:
            raise ValueError(
                f"v must have shape ({self.dim},) or ({self.dim}, K), got {tuple(v.shape)}"
            )
        if not v.is_floating_point():
            raise TypeError(f"v must be a floating tensor, got dtype {v.dtype}")
        if v.dim() == 2 and v.shape[1] == 0:
            return v.clone()
        if not all_finite(v):
            raise ValueError("v must be finite, got NaN or inf entries")
        return self._product(v)

    def _product(self, v: torch.Tensor) -> torch.Tensor:
        """``self @ v`` without the argument checks (for callers whose ``v`` is known to be
        finite and of the right shape, e.g. the Lanczos recurrence). Layout-preserving: a ``v``
        that is the transpose of a contiguous ``(K, dim)`` block is passed on as such."""
        out_dtype, out_device = v.dtype, v.device
        V = v.reshape(self.dim, -1).to(device=self.device, dtype=self.dtype)
        out = self._matmat(V)
        out = out.to(device=out_device, dtype=out_dtype)
        return out.reshape(v.shape)

    def matvec(self, v: Any) -> Any:
        """``self @ v``; a NumPy ``v`` gives a NumPy array of its dtype (SciPy's convention)."""
        if isinstance(v, np.ndarray):
            out = self @ torch.from_numpy(np.array(v, dtype=v.dtype, copy=True))
            return out.detach().cpu().numpy()
        return self @ v

    def matmat(self, V: Any) -> Any:
        """``self @ V`` for ``V`` of shape ``(dim, K)``, like :meth:`matvec`."""
        return self.matvec(V)

    def rmatvec(self, v: Any) -> Any:
        """``selfᵀ v`` = ``self @ v`` (symmetric), like :meth:`matvec`."""
        return self.matvec(v)

    def rmatmat(self, V: Any) -> Any:
        """``selfᵀ V`` = ``self @ V`` (symmetric), like :meth:`matvec`."""
        return self.matvec(V)

    def to_dense(self, max_dim: int = 20_000, chunk: int = 64) -> torch.Tensor:
        """The matrix, ``dim × dim``, by products with identity columns (``chunk`` at a time)."""
        check_int(max_dim, "max_dim", minimum=1)
        check_int(chunk, "chunk", minimum=1)
        if self.dim > max_dim:
            raise ValueError(
                f"to_dense: dim={self.dim} exceeds max_dim={max_dim}; a dense Hessian would need "
                f"{self.dim**2 * 8 / 2**30:.1f} GiB in float64. Use slq/top_eigenvalues instead, "
                f"or raise max_dim"
            )
        acc = torch.float64 if self.dtype in (torch.float16, torch.bfloat16) else self.dtype
        cols = []
        for start in range(0, self.dim, chunk):
            stop = min(self.dim, start + chunk)
            E = torch.zeros(self.dim, stop - start, dtype=acc, device=self.device)
            E[torch.arange(start, stop), torch.arange(stop - start)] = 1
            cols.append(self @ E)
        return torch.cat(cols, dim=1)


class DenseOperator(Operator):
    """A dense symmetric matrix as an :class:`Operator`."""

    def __init__(self, matrix: Any, name: str = "H"):
        if isinstance(matrix, np.ndarray):
            matrix = torch.from_numpy(matrix)
        if not isinstance(matrix, torch.Tensor):
            raise TypeError(f"{name} must be a tensor or array, got {type(matrix).__name__}")
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty square matrix, got shape {tuple(matrix.shape)}")
        if not matrix.is_floating_point():
            matrix = matrix.to(torch.float64)
        if not torch.isfinite(matrix).all():
            raise ValueError(f"{name} must be finite, got NaN or inf entries")
        self.matrix = matrix
        self.dim = int(matrix.shape[0])
        self.dtype = matrix.dtype
        self.device = matrix.device

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.matrix @ V


class ScipyOperator(Operator):
    """A square, real ``scipy.sparse.linalg.LinearOperator`` as an :class:`Operator` (float64,
    CPU); symmetric by assumption (not checked: that would cost products)."""

    def __init__(self, op: Any, name: str = "H"):
        if len(op.shape) != 2 or op.shape[0] != op.shape[1] or op.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty square operator, got shape {op.shape}")
        if op.dtype is not None and np.dtype(op.dtype).kind not in "fiub":
            raise TypeError(f"{name} must be a real operator, got dtype {op.dtype}")
        self.op = op
        self.name = name
        self.dim = int(op.shape[0])
        self.dtype = torch.float64
        self.device = torch.device("cpu")

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = np.asarray(self.op.matmat(V.cpu().numpy()))
        if out.shape != tuple(V.shape) or np.iscomplexobj(out):
            raise ValueError(
                f"{self.name}.matmat returned {'complex ' if np.iscomplexobj(out) else ''}shape "
                f"{out.shape}, expected real {tuple(V.shape)}"
            )
        return torch.as_tensor(out, dtype=torch.float64)


class FunctionOperator(Operator):
    """A ``v -> H v`` function as an :class:`Operator` of dimension ``dim``.

    ``matvec(v)`` receives a ``(dim,)`` tensor of ``dtype`` on ``device`` and returns ``H v``
    (a tensor or array of ``dim`` entries); with ``batched=True`` it receives a ``(dim, K)``
    block and returns ``H V`` of the same shape (one call per block of columns), else the columns
    go one at a time. ``H`` must be symmetric (not checked: that would cost products).
    """

    def __init__(self, matvec: Callable[[torch.Tensor], Any], dim: int,
                 dtype: torch.dtype = torch.float64, device: Any = "cpu", batched: bool = False):
        if not callable(matvec):
            raise TypeError(f"matvec must be a callable v -> H v, got {type(matvec).__name__}")
        self.fn = matvec
        self.dim = check_int(dim, "dim", minimum=1)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.dtype = dtype
        try:
            self.device = torch.device(device)
        except (TypeError, RuntimeError) as exc:
            raise TypeError(f"device must be a torch.device or a device string, got {device!r}") from exc
        if not isinstance(batched, bool):
            raise TypeError(f"batched must be a bool, got {type(batched).__name__}")
        self.batched = batched

    def _call(self, v: torch.Tensor) -> torch.Tensor:
        out = self.fn(v)
        if isinstance(out, np.ndarray):
            out = torch.from_numpy(out)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"matvec must return a tensor or an array, got {type(out).__name__}")
        if out.numel() != v.numel():
            raise ValueError(
                f"matvec returned {tuple(out.shape)} for an input of shape {tuple(v.shape)}"
            )
        return out.reshape(v.shape).to(device=self.device, dtype=self.dtype)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        if self.batched:
            return self._call(V)
        return torch.stack([self._call(V[:, k].contiguous()) for k in range(V.shape[1])], dim=1)


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The NumPy dtype of a torch floating dtype (``bfloat16``, which NumPy lacks: ``float32``)."""
    if dtype == torch.bfloat16:
        return np.dtype(np.float32)
    return torch.empty((), dtype=dtype).numpy().dtype


def as_operator(H: Any, name: str = "H") -> Operator:
    """An :class:`Operator` from an operator, a dense tensor/array, a SciPy ``LinearOperator``
    (:class:`ScipyOperator`), or a ``v -> H v`` callable that has an integer ``dim`` attribute
    (:class:`FunctionOperator` with its ``dtype``/``device`` attributes when they are torch's;
    wrap a plain function as ``FunctionOperator(fn, dim)``)."""
    if isinstance(H, Operator):
        return H
    if isinstance(H, (torch.Tensor, np.ndarray)):
        return DenseOperator(H, name=name)
    try:
        from scipy.sparse.linalg import LinearOperator
    except ImportError:  # pragma: no cover
        LinearOperator = ()  # type: ignore[assignment]
    if isinstance(H, LinearOperator):
        return ScipyOperator(H, name=name)
    if callable(H):
        dim = getattr(H, "dim", None)
        if dim is None or callable(dim):
            raise TypeError(
                f"{name} is a callable without an integer dim attribute: wrap a v -> H v function "
                f"as phasetrans.FunctionOperator(fn, dim) (or set fn.dim)"
            )
        dtype = getattr(H, "dtype", torch.float64)
        device = getattr(H, "device", "cpu")
        return FunctionOperator(
            H, check_int(dim, f"{name}.dim", minimum=1),
            dtype=dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float64,
            device=device if isinstance(device, (str, torch.device)) else "cpu",
        )
    raise TypeError(
        f"{name} must be a phasetrans operator (e.g. HessianOperator), a square tensor/array, a "
        f"scipy.sparse.linalg.LinearOperator or a v -> H v callable with a dim "
        f"(phasetrans.FunctionOperator(fn, dim)), got {type(H).__name__}"
    )


def apply(
    op: Operator, V: torch.Tensor, block_size: int | None = None, where: str = ""
) -> torch.Tensor:
    """``op @ V`` in float64, ``block_size`` columns per product (None: all at once).

    The estimators' internal product: through ``Operator._product`` (no re-validation of ``V``;
    the public ``@`` validates). A non-finite product (an operator error, or NaN/inf entries in
    the result) raises ``ValueError`` that says ``where`` it happened (e.g. the Lanczos step)
    besides the operator's own detail (e.g. the data batch)."""
    V = V.to(dtype=_F64)
    try:
        if block_size is None or V.shape[1] <= block_size:
            out = op._product(V)
        else:
            out = torch.cat(
                [op._product(V[:, i : i + block_size]) for i in range(0, V.shape[1], block_size)], 1
            )
    except ValueError as exc:
        if where and "non-finite" in str(exc):
            raise ValueError(f"{exc} ({where})") from exc
        raise
    if not all_finite(out):
        raise ValueError(
            f"non-finite operator product (NaN or inf entries){' (' + where + ')' if where else ''}"
        )
    return out


def guard(op: Operator) -> contextlib.ExitStack:
    """No autograd graph (a dense ``H`` may require grad), and ``preserve_model`` on the model
    behind a ``HessianOperator`` (defensive: the operator never writes to it)."""
    from torch import nn

    from .._checks import preserve_model

    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    model = getattr(op, "model", None)
    if isinstance(model, nn.Module):
        stack.enter_context(preserve_model(model))
    return stack


def check_ranks_agree_on(op: Operator, where: str, **settings: Any) -> None:
    """For a data-parallel operator (``op.distributed``): every rank must pass the same
    ``settings`` (the estimator's arguments that set the number and width of products) and
    hold the same weights (:func:`~phasetrans.linalg._checkpoint.operator_fingerprint`: every
    parameter and buffer, hashed once per call); else ``ValueError`` on every rank
    (:func:`~phasetrans.distributed.check_ranks_agree`)."""
    if not getattr(op, "distributed", False):
        return
    from ..distributed import check_ranks_agree
    from ._checkpoint import operator_fingerprint

    check_ranks_agree({**settings, "weights": operator_fingerprint(op)}, where)
