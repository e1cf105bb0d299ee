"""Linear operators: the dataset-level Hessian of a model's loss, and dense matrices.

An operator has ``.dim``, ``.dtype``, ``.device`` and supports ``H @ v`` for ``v`` of shape
``(dim,)`` or ``(dim, K)`` (K columns served by one pass over the data), like curvlinops'
operators and SciPy's ``LinearOperator``. The spectral estimators (:mod:`phasetrans.spectral`)
accept any such operator, a dense symmetric tensor/array, or a ``scipy.sparse.linalg.LinearOperator``.

The Hessian-vector product of the dataset-mean loss weights each batch by its size (THEORY §6)::

    H v = sum_b (|b| / N) H_b v,        N = sum_b |b|

so an uneven last batch is exact. Reference: Pearlmutter, "Fast exact multiplication by the
Hessian" (1994); forward-over-reverse via ``torch.func`` (``vmap`` of ``jvp`` of ``grad``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, jvp, vmap

from ._batches import as_batches, batch_size, move_batch
from ._checks import check_callable, check_choice, check_int, check_model, model_device_dtype
from .params import select_parameters

__all__ = ["Operator", "DenseOperator", "HessianOperator", "as_operator"]


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
    dtype: torch.dtype
    device: torch.device

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

    def matvec(self, v: Any) -> torch.Tensor:
        """Same as ``self @ v``."""
        return self @ v

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


class _ScipyOperator(Operator):
    def __init__(self, op: Any):
        if op.shape[0] != op.shape[1]:
            raise ValueError(f"H must be square, got shape {op.shape}")
        self.op = op
        self.dim = int(op.shape[0])
        self.dtype = torch.float64
        self.device = torch.device("cpu")

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = self.op.matmat(V.cpu().numpy())
        return torch.as_tensor(np.asarray(out), dtype=torch.float64)


def as_operator(H: Any, name: str = "H") -> Operator:
    """An :class:`Operator` from an operator, a dense tensor/array, or a SciPy LinearOperator."""
    if isinstance(H, Operator):
        return H
    if isinstance(H, (torch.Tensor, np.ndarray)):
        return DenseOperator(H, name=name)
    try:
        from scipy.sparse.linalg import LinearOperator
    except ImportError:  # pragma: no cover
        LinearOperator = ()  # type: ignore[assignment]
    if isinstance(H, LinearOperator):
        return _ScipyOperator(H)
    raise TypeError(
        f"{name} must be a phasetrans operator (e.g. HessianOperator), a square tensor/array, or "
        f"a scipy.sparse.linalg.LinearOperator, got {type(H).__name__}"
    )


_BATCHNORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


class _GraphCache:
    """Kept per-batch gradient graphs of a :class:`HessianOperator` (graph reuse), with the
    bytes they hold: every storage the graphs save (counted once, through
    ``torch.autograd.graph.saved_tensors_hooks``; parameter storages excluded) plus the
    gradients themselves."""

    def __init__(self, key: tuple, budget: int, model: nn.Module):
        self.key = key
        self.budget = budget
        self.nbytes = 0
        self.entries: list[tuple[int, int, list, tuple]] = []
        # the model's own storages (the graph's leaves alias the parameters) are not new memory
        self._seen: set[int] = {
            t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]
        }

    def counting_hooks(self):
        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in self._seen:
                self._seen.add(ptr)
                self.nbytes += storage.nbytes()
            return t

        return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)

    def add(self, index: int, size: int, ws: list, gs: tuple) -> bool:
        """Keep one batch's graph; ``False`` (and nothing kept) once over the budget."""
        self.nbytes += sum(g.numel() * g.element_size() for g in gs)
        if self.nbytes > self.budget:
            self.entries.clear()
            return False
        self.entries.append((index, size, ws, gs))
        return True


class HessianOperator(Operator):
    """Hessian of the dataset-mean training loss with respect to selected parameters.

    ``H @ v`` computes ``sum_b (|b|/N) ∇²L_b(w) v`` exactly (uneven last batch included) with
    the other parameters held fixed; ``v`` may have ``K`` columns, served by one pass over the
    data (``vmap`` of forward-over-reverse ``jvp(grad)``, or graph-reusing double backward).

    Parameters
    ----------
    model : nn.Module
        Evaluated functionally (``torch.func.functional_call``); never modified.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the batch *mean* loss.
    data : DataLoader, iterable of ``(inputs, targets)``, or one ``(inputs, targets)`` tuple
    params : None | "all" | list of str
        ``None``: prunable weights (``nn.Linear``/``nn.Conv*`` weights); ``"all"``: every
        floating parameter; or a list of parameter names.
    batchnorm : "eval" | "train"
        ``"eval"`` (default) evaluates the whole model in eval mode (running statistics for
        BatchNorm, no dropout), which makes ``H`` a fixed matrix. ``"train"`` uses batch
        statistics in BatchNorm layers (running statistics are not updated).
    method : "auto" | "func" | "backward"
        ``"func"``: ``vmap(jvp(grad))``, recomputed every product; ``"backward"``: one gradient
        graph per batch (``create_graph=True``), one backward of it per column, the graphs kept
        across products when they fit in ``cache_bytes`` (graph reuse). ``"auto"``: the cached
        graphs whenever they fit; otherwise, per product, ``"backward"`` for one column and
        ``"func"`` for several (measured in ``bench/hvp_methods.py``, docs/BENCHMARKS.md).
        Always ``"backward"`` with ``batchnorm="train"``.
    distributed : None | bool
        Data-parallel products over ``torch.distributed``: each rank passes its shard, batch
        sums and sample counts are all-reduced, so ``H @ v`` is the whole-data product on every
        rank. ``None``: on when ``torch.distributed`` is initialised.
    chunk_size : int, optional
        Columns per vectorised pass (``"func"``, or one batched backward of a gradient graph), a
        memory bound for many columns; default 8 with ``method="auto"`` (a CNN at K = 16 is 1.7x
        slower unchunked), else all at once.
    cache_bytes : int, optional
        Memory budget, in bytes, for graph reuse: on the first product each batch's gradient
        graph (its saved activations and backward intermediates) is kept, and every later product
        is only the backward of the kept graphs -- about 2 gradient passes per column instead of
        3 (Pearlmutter's product without redoing the forward and first backward). All or
        nothing: if the graphs of the whole data outgrow the budget, none is kept. Default
        (``None``): 1 GiB on CPU, a quarter of the free memory on a GPU. ``0`` turns it off. The
        kept graphs follow the model: a changed parameter or buffer (in place or replaced)
        rebuilds them; after changing the *data*, call :meth:`clear_cache`. Kept graphs fix the
        batches of the first pass: a shuffling DataLoader gives the same ``H`` (same samples), and
        random augmentation is frozen at its first draw (a fixed matrix, as Lanczos needs).

    Examples
    --------
    >>> H = HessianOperator(model, torch.nn.functional.cross_entropy, loader)  # doctest: +SKIP
    >>> Hv = H @ torch.randn(H.dim)                                             # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], torch.Tensor],
        data: Any,
        params: Any = None,
        batchnorm: str = "eval",
        method: str = "auto",
        distributed: bool | None = None,
        chunk_size: int | None = None,
        cache_bytes: int | None = None,
    ):
        self.model = check_model(model)
        check_callable(loss_fn, "loss_fn")
        self.loss_fn = loss_fn
        self.data = as_batches(data)
        self.batchnorm = check_choice(batchnorm, "batchnorm", ("eval", "train"))
        method = check_choice(method, "method", ("auto", "func", "backward"))
        if method == "auto" and batchnorm == "train":
            method = "backward"
        if method == "func" and batchnorm == "train":
            raise ValueError(
                "method='func' cannot be combined with batchnorm='train' (batch statistics are "
                "not vmappable); use method='backward'"
            )
        self.method = method
        if chunk_size is not None:
            chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
        elif method == "auto":
            chunk_size = 8
        self.chunk_size = chunk_size
        if cache_bytes is not None:
            cache_bytes = check_int(cache_bytes, "cache_bytes", minimum=0)
        self.cache_bytes = cache_bytes
        self._cache: _GraphCache | None = None
        self._cache_refused_key: tuple | None = None  # the state whose graphs outgrew the budget
        if distributed is None:
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        elif not isinstance(distributed, bool):
            raise TypeError(f"distributed must be None or a bool, got {type(distributed).__name__}")
        if distributed and not (
            torch.distributed.is_available() and torch.distributed.is_initialized()
        ):
            raise ValueError("distributed=True needs an initialised torch.distributed process group")
        self.distributed = distributed

        self.param_names = select_parameters(model, params)
        named = dict(model.named_parameters())
        self._shapes = [named[n].shape for n in self.param_names]
        self._numels = [named[n].numel() for n in self.param_names]
        self.dim = int(sum(self._numels))
        self.device, self.dtype = model_device_dtype(model)
        dtypes = {named[n].dtype for n in self.param_names}
        if len(dtypes) != 1:
            raise ValueError(f"params: selected parameters must share one dtype, got {dtypes}")
        self.dtype = dtypes.pop()
        self.device = named[self.param_names[0]].device
        self.num_samples: int | None = None  # known after the first pass
        self._checked = False
        # one batched backward of a graph (vmap over the engine) for several columns beat a loop
        # over them on an MLP (1.13 vs 1.85 gradient passes per column at K = 8, 2 CPU threads)
        # but lost with convolutions (small CNN 1.68 vs 1.48, ResNet-18 3.06 vs 2.16)
        self._batched_backward = not any(
            isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()
        )

    # -- helpers ---------------------------------------------------------------------------
    def parameters_vector(self) -> torch.Tensor:
        """The selected parameters, flattened and concatenated (a detached copy)."""
        named = dict(self.model.named_parameters())
        return torch.cat([named[n].detach().reshape(-1) for n in self.param_names]).clone()

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat vector of length ``dim`` into ``{name: tensor}`` with parameter shapes."""
        pieces = torch.split(flat, self._numels)
        return {n: p.view(s) for n, p, s in zip(self.param_names, pieces, self._shapes)}

    def _fixed_state(self) -> dict[str, torch.Tensor]:
        state = {n: p.detach() for n, p in self.model.named_parameters() if n not in self.param_names}
        for n, b in self.model.named_buffers():
            # copies, so that nothing done in a forward pass can touch the user's buffers
            state[n] = b.detach().clone() if self.batchnorm == "train" else b.detach()
        return state

    @contextlib.contextmanager
    def _modes(self) -> Iterator[None]:
        """Eval mode for the whole model during a pass (BatchNorm in train mode with
        ``batchnorm="train"``); every module's mode is put back afterwards."""
        saved = [(m, m.training) for m in self.model.modules()]
        for m in self.model.modules():
            m.training = self.batchnorm == "train" and isinstance(m, _BATCHNORM_TYPES)
        try:
            yield
        finally:
            for m, mode in saved:
                m.training = mode

    def _loss(self, params: dict[str, torch.Tensor], fixed: dict, inputs: Any, targets: Any):
        """The batch loss with the selected parameters taken from ``params`` (name -> tensor)
        and the others from ``fixed``."""
        state = dict(fixed)
        state.update(params)
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        outputs = functional_call(self.model, state, args)
        return self.loss_fn(outputs, targets)

    def _batches(self):
        for index, (inputs, targets) in enumerate(self.data):
            yield index, batch_size(inputs), move_batch(inputs, targets, self.device, self.dtype)

    @staticmethod
    def _check_loss(loss: torch.Tensor, index: int) -> None:
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(
                f"loss_fn must return a scalar tensor (the batch mean), got "
                f"{type(loss).__name__}{'' if not isinstance(loss, torch.Tensor) else tuple(loss.shape)}"
                f" at batch {index}"
            )
        if not torch.isfinite(loss).all():
            raise ValueError(f"non-finite loss ({loss.item()}) at batch {index} of data")

    def _reduce(self, total: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
        if not self.distributed:
            return total, count
        import torch.distributed as dist

        n = torch.tensor([float(count)], dtype=torch.float64, device=total.device)
        dist.all_reduce(total)
        dist.all_reduce(n)
        return total, int(round(n.item()))

    # -- products --------------------------------------------------------------------------
    def clear_cache(self) -> None:
        """Drop the kept gradient graphs (graph reuse); the next product rebuilds them."""
        self._cache = None
        self._cache_refused_key = None

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the kept gradient graphs (0 when none are kept)."""
        return self._cache.nbytes if self._cache is not None else 0

    def _state_key(self) -> tuple:
        """Identity of everything a kept graph depends on besides the data: each parameter's and
        buffer's object, storage, version counter (bumped by in-place changes), shape and dtype."""
        return tuple(
            (name, id(t), t.data_ptr(), t._version, tuple(t.shape), t.dtype, str(t.device))
            for name, t in [*self.model.named_parameters(), *self.model.named_buffers()]
        )

    def _cache_budget(self) -> int:
        if self.cache_bytes is not None:
            return self.cache_bytes
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(free // 4)
        return 1 << 30

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        fixed = self._fixed_state()
        acc_dtype = torch.float64 if self.dtype != torch.float64 else self.dtype
        K = V.shape[1]
        # the accumulator is laid out (K, dim): each column's product is a contiguous row, so the
        # per-parameter pieces are added in place (no concatenation, no float64 copy per batch)
        total = torch.zeros(K, self.dim, dtype=acc_dtype, device=self.device)
        count = 0
        key = self._state_key()
        if self._cache is not None and self._cache.key != key:
            self._cache = None
        if self._cache_refused_key is not None and self._cache_refused_key != key:
            self._cache_refused_key = None
        budget = (
            self._cache_budget()
            if self.method != "func" and self._cache is None and self._cache_refused_key is None
            else 0
        )
        may_cache = budget > 0
        method = self.method
        if method == "auto":
            method = "backward" if (K == 1 or self._cache is not None or may_cache) else "func"
        with self._modes():
            if method == "func":
                w = self.parameters_vector()
                for index, size, (inputs, targets) in self._batches():
                    HV = self._batch_hvp_func(w, fixed, inputs, targets, index, V)
                    total.T.add_(HV, alpha=float(size))
                    self._check_finite(total, index)
                    count += size
            else:
                # V split once per product into contiguous per-parameter blocks (K, *shape)
                Vt = V.T.contiguous()
                blocks = [b.reshape(K, *s) for b, s in zip(torch.split(Vt, self._numels, 1), self._shapes)]
                blocks = [b if b.is_contiguous() else b.contiguous() for b in blocks]
                pieces = [t.view(K, *s) for t, s in zip(torch.split(total, self._numels, 1), self._shapes)]
                if self._cache is not None:
                    for index, size, ws, gs in self._cache.entries:
                        self._apply_graph(ws, gs, blocks, pieces, float(size), keep=True)
                        self._check_finite(total, index)
                        count += size
                else:
                    cache = _GraphCache(key, budget, self.model) if may_cache else None
                    named = dict(self.model.named_parameters())
                    leaves = [named[n].detach() for n in self.param_names]
                    for index, size, (inputs, targets) in self._batches():
                        ws, gs = self._batch_graph(leaves, fixed, inputs, targets, index, cache)
                        keep = cache is not None and cache.add(index, size, ws, gs)
                        if cache is not None and not keep:
                            self._cache_refused_key, cache = key, None  # over budget: keep none
                        self._apply_graph(ws, gs, blocks, pieces, float(size), keep=keep)
                        self._check_finite(total, index)
                        count += size
                    self._cache = cache  # kept only once the whole pass fitted in the budget
        total, count = self._reduce(total, count)  # (K, dim), contiguous for all_reduce
        self.num_samples = count
        # the float64 accumulator, transposed: (dim, K) with each column contiguous (the
        # Lanczos layout); Operator._product casts it once to the dtype asked for
        return total.div_(count).T

    @staticmethod
    def _check_finite(total: torch.Tensor, index: int) -> None:
        # the running total is finite iff every batch product so far was
        if not all_finite(total):
            raise ValueError(f"non-finite Hessian-vector product at batch {index} of data")

    def _batch_hvp_func(self, w, fixed, inputs, targets, index, V):
        def loss_of(flat):
            return self._loss(self.unflatten(flat), fixed, inputs, targets)

        if not self._checked:
            # one plain forward, once, so that a bad loss_fn gets a clear error, not a vmap one
            with torch.no_grad():
                self._check_loss(loss_of(w), index)
            self._checked = True
        gradient_and_loss = grad_and_value(loss_of)

        def hvp(v):
            _, hv, loss = jvp(gradient_and_loss, (w,), (v,), has_aux=True)
            return hv, loss

        if V.shape[1] == 1:
            hv, loss = hvp(V[:, 0])
            HV = hv.unsqueeze(1)
        else:
            HV, loss = vmap(hvp, in_dims=1, out_dims=(1, 0), chunk_size=self.chunk_size)(V)
            loss = loss[0]
        self._check_loss(loss.detach(), index)
        return HV

    def _batch_graph(self, leaves, fixed, inputs, targets, index, cache):
        """The batch's gradient graph: per-parameter leaves ``ws`` (no flatten/split in the
        graph) and ``gs = ∇L_b(ws)`` with ``create_graph=True``; the bytes it saves are counted
        into ``cache`` when given."""
        hooks = cache.counting_hooks() if cache is not None else contextlib.nullcontext()
        with torch.enable_grad(), hooks:
            ws = [p.requires_grad_(True) for p in (leaf.detach() for leaf in leaves)]
            loss = self._loss(dict(zip(self.param_names, ws)), fixed, inputs, targets)
            self._check_loss(loss, index)
            gs = torch.autograd.grad(loss, ws, create_graph=True)
        return ws, gs

    def _apply_graph(self, ws, gs, blocks, pieces, size, keep):
        """``size · H_b V`` added to ``pieces``: backward of the gradient graph for each column
        (one batched backward per ``chunk_size`` columns when ``self._batched_backward``)."""
        K = blocks[0].shape[0] if blocks else 0
        if K > 1 and self._batched_backward:
            step = self.chunk_size or K
            for lo in range(0, K, step):
                hi = min(K, lo + step)
                hvs = torch.autograd.grad(
                    gs, ws, grad_outputs=[b[lo:hi] for b in blocks],
                    retain_graph=keep or hi < K, is_grads_batched=True,
                )
                for piece, hv in zip(pieces, hvs):
                    piece[lo:hi].add_(hv, alpha=size)
            return
        for k in range(K):
            hvs = torch.autograd.grad(
                gs, ws, grad_outputs=[b[k] for b in blocks], retain_graph=keep or k < K - 1
            )
            for piece, hv in zip(pieces, hvs):
                piece[k].add_(hv, alpha=size)

    # -- whole-data quantities ------------------------------------------------------------
    def loss_and_gradient(self) -> tuple[float, torch.Tensor, list[float], list[int]]:
        """Dataset-mean loss, its gradient (w.r.t. the selected parameters), and the per-batch
        losses and sizes (when distributed: every rank's batches, in rank order, on every rank)."""
        w = self.parameters_vector()
        fixed = self._fixed_state()
        acc_dtype = torch.float64
        gsum = torch.zeros(self.dim, dtype=acc_dtype, device=self.device)
        lsum = torch.zeros(1, dtype=acc_dtype, device=self.device)
        losses, sizes = [], []
        with self._modes():
            for index, size, (inputs, targets) in self._batches():
                with torch.enable_grad():
                    flat = w.detach().requires_grad_(True)
                    loss = self._loss(self.unflatten(flat), fixed, inputs, targets)
                    self._check_loss(loss, index)
                    (g,) = torch.autograd.grad(loss, flat)
                gsum.add_(g.to(acc_dtype), alpha=float(size))
                lsum += float(loss.detach()) * size
                losses.append(float(loss.detach()))
                sizes.append(size)
        packed, count = self._reduce(torch.cat([gsum, lsum]), sum(sizes))
        gsum, lsum = packed[: self.dim], packed[self.dim :]
        losses, sizes = self._gather(losses, sizes)
        self.num_samples = count
        return float(lsum.item() / count), (gsum / count).to(self.dtype), losses, sizes

    def batch_losses(self) -> tuple[list[float], list[int]]:
        """Per-batch (mean) losses and batch sizes at the current weights, by forward passes
        only (when distributed: every rank's batches, in rank order, on every rank). The default
        loss tolerance ε is their standard deviation (:func:`phasetrans.estimate_eps`)."""
        named = dict(self.model.named_parameters())
        params = {n: named[n].detach() for n in self.param_names}
        fixed = self._fixed_state()
        losses, sizes = [], []
        with self._modes(), torch.no_grad():
            for index, size, (inputs, targets) in self._batches():
                loss = self._loss(params, fixed, inputs, targets)
                self._check_loss(loss, index)
                losses.append(float(loss))
                sizes.append(size)
        return self._gather(losses, sizes)

    def _gather(self, losses: list[float], sizes: list[int]) -> tuple[list[float], list[int]]:
        if not self.distributed:
            return losses, sizes
        from .distributed import all_gather_list

        return all_gather_list(losses), all_gather_list(sizes)

    def __repr__(self) -> str:
        return (
            f"HessianOperator(dim={self.dim}, dtype={self.dtype}, device={self.device}, "
            f"params={len(self.param_names)} tensors, method={self.method!r}, "
            f"batchnorm={self.batchnorm!r}, distributed={self.distributed})"
        )

