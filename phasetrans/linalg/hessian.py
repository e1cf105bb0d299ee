"""The dataset-level Hessian of a model's loss as a linear operator.

The Hessian-vector product of the dataset-mean loss weights each batch by its size (THEORY §6)::

    H v = sum_b (|b| / N) H_b v,        N = sum_b |b|

so an uneven last batch is exact. Reference: Pearlmutter, "Fast exact multiplication by the
Hessian" (1994); forward-over-reverse via ``torch.func`` (``vmap`` of ``jvp`` of ``grad``), or
the double backward of kept gradient graphs (:mod:`._graph_cache`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn
from torch.func import grad_and_value, jvp, vmap

from .._batches import FixedOrder, as_batches, batch_size, move_batch
from .._checks import check_callable, check_choice, check_int, check_model, model_device_dtype
from ..params import effective_values, select_parameters
from ._checkpoint import digest_batch
from ._conv_rules import ColumnsChoice, ConvRules
from ._empirical_risk import (
    BatchNormMode,
    batch_loss,
    check_batch_loss,
    fixed_state,
    gather_batches,
    pass_modes,
    reduce_sum,
    sized_batches,
)
from ._graph_cache import GraphCache, apply_graph, column_loop, default_budget, state_key
from ._pearlmutter import Tape, columns, record, sequential_plan, tape_product
from .operator import Operator, all_finite

__all__ = ["HessianOperator", "HvpMethod"]

HvpMethod = Literal["auto", "func", "backward"]


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
    params : None | "all" | list of names, Parameters or modules
        ``None``: prunable weights (:func:`~phasetrans.params.prunable_parameters`); ``"all"``:
        every floating parameter; or a list of parameter names, ``nn.Parameter`` objects or
        submodules (:func:`~phasetrans.params.select_parameters`). A weight pruned with
        ``torch.nn.utils.prune`` is taken as its effective weight ``weight_orig * weight_mask``.
    batchnorm : "eval" | "train"
        ``"eval"`` (default) evaluates the whole model in eval mode (running statistics for
        BatchNorm, no dropout), which makes ``H`` a fixed matrix. ``"train"`` uses batch
        statistics in BatchNorm layers (running statistics are not updated).
    method : "auto" | "func" | "backward"
        ``"func"``: ``vmap(jvp(grad))``, recomputed every product; ``"backward"``: one gradient
        graph per batch (``create_graph=True``), one backward of it per column (or one batched
        backward for several where measured faster: no convolutions, or convolutions with small
        activations, :mod:`._conv_rules`), the graphs kept
        across products when they fit in ``cache_bytes`` (graph reuse). ``"auto"``: the cached
        graphs whenever they fit; otherwise, per product, ``"backward"`` for one column and
        ``"func"`` for several (measured in ``bench/hvp_methods.py``, docs/BENCHMARKS.md);
        and for an ``nn.Sequential`` of ``nn.Linear`` / ``nn.Conv1d-3d`` layers, eval-mode
        BatchNorm, ReLU / LeakyReLU / Tanh / Sigmoid / Softplus, average and max pooling and
        ``nn.Flatten`` under
        ``nn.CrossEntropyLoss()`` or ``nn.MSELoss()``, Pearlmutter's R-operator written out
        (:mod:`._pearlmutter`: the same exact product without autograd, six matmuls or
        convolutions per layer and column, the per-batch values kept like the graphs).
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
        graph (its saved activations and backward intermediates; for the written-out
        feed-forward stacks, the batch's tape of forward and backward values) is kept, and every
        later product is only the backward of the kept graphs -- about 2 gradient passes per
        column instead of 3 (Pearlmutter's product without redoing the forward and first
        backward; 1.0-1.5 for the written-out stacks). All or
        nothing: if the graphs of the whole data outgrow the budget, none is kept. Default
        (``None``): 1 GiB on CPU, a quarter of the free memory on a GPU. ``0`` turns it off. The
        kept graphs follow the model: a changed parameter or buffer (in place or replaced)
        rebuilds them, also when changed through ``p.data`` (which bumps no version counter: the
        values are compared with a copy kept beside the graphs); after changing the *data*, call
        :meth:`clear_cache`.

    Every pass over the data (each product, :meth:`loss_and_gradient`, :meth:`batch_losses`)
    sees the same batches: it runs under a forked CPU RNG seeded with 0 and with the loader's
    own generators set to their state when the operator was made, both put back afterwards
    (:class:`~phasetrans._batches.FixedOrder`). So a shuffling DataLoader (``drop_last`` too)
    gives one fixed, symmetric ``H`` (a fixed matrix, as Lanczos needs), random augmentation
    drawn from the torch RNG is frozen, and the caller's random streams do not move. A forward
    that updates buffers (BatchNorm in ``"train"`` mode, a counter, an EMA) gets fresh copies
    of them per batch, so the model's buffers never change and every batch sees the same values.
    Not thread-safe: one instance must not run products from two threads at once (the kept
    graphs and the RNG fork are per call, not locked).
    batch_fn : callable, optional
        ``batch_fn(batch) -> (inputs, targets)`` for batches of another shape (e.g. the dicts of
        HuggingFace-style loaders); ``inputs`` may be a tensor, a tuple (positional arguments of
        the model) or a dict (keyword arguments).

    Attention (``F.scaled_dot_product_attention``) runs on its math kernel during the passes:
    the fused kernels have no double backward.

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
        batchnorm: BatchNormMode = "eval",
        method: HvpMethod = "auto",
        distributed: bool | None = None,
        chunk_size: int | None = None,
        cache_bytes: int | None = None,
        batch_fn: Callable[[Any], Any] | None = None,
    ):
        self.model = check_model(model)
        check_callable(loss_fn, "loss_fn")
        self.loss_fn = loss_fn
        if batch_fn is not None:
            check_callable(batch_fn, "batch_fn")
        self.data = as_batches(data, batch_fn=batch_fn)
        self._order = FixedOrder(self.data)  # every pass sees the same batches (shuffling too)
        self.batchnorm = check_choice(batchnorm, "batchnorm", ("eval", "train"))
        self.method = _resolve_method(method, batchnorm)
        if chunk_size is not None:
            chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
        elif self.method == "auto":
            chunk_size = 8
        self.chunk_size = chunk_size
        if cache_bytes is not None:
            cache_bytes = check_int(cache_bytes, "cache_bytes", minimum=0)
        self.cache_bytes = cache_bytes
        self._cache: GraphCache | None = None
        self._cache_refused_key: tuple | None = None  # the state whose graphs outgrew the budget
        self.distributed = _resolve_distributed(distributed)

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
        # over them on an MLP (1.13 vs 1.85 gradient passes per column at K = 8, 2 CPU threads);
        # with convolutions the graphs are built under ConvRules and each built graph decides
        # (ColumnsChoice: a torch.func.vmap of at most so many columns, or a loop)
        self._has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
        self._columns: tuple[bool | str, int | None] = (False, None) if self._has_conv else (
            "engine", None)
        # a feed-forward stack of the written-out form (its products without autograd), read at
        # every product of method="auto" (:meth:`_matmat`)
        self._plan = None

    # -- helpers ---------------------------------------------------------------------------
    def parameters_vector(self) -> torch.Tensor:
        """The selected parameters, flattened and concatenated (a detached copy)."""
        values = effective_values(self.model, self.param_names)
        return torch.cat([values[n].reshape(-1) for n in self.param_names]).clone()

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat vector of length ``dim`` into ``{name: tensor}`` with parameter shapes."""
        pieces = torch.split(flat, self._numels)
        return {n: p.view(s) for n, p, s in zip(self.param_names, pieces, self._shapes)}

    def _fixed_state(self) -> dict[str, torch.Tensor]:
        return fixed_state(self.model, self.param_names, self.batchnorm)

    @contextlib.contextmanager
    def _modes(self):
        """One pass over the data: the model's modes (:func:`pass_modes`: batch-norm modes, the
        math attention kernel, torch.nn.utils.prune's attributes) and a fixed data order
        (:class:`FixedOrder`), all put back afterwards."""
        with pass_modes(self.model, self.batchnorm), self._order():
            yield

    def _loss(self, params: dict[str, torch.Tensor], fixed: dict, inputs: Any, targets: Any):
        return batch_loss(self.model, self.loss_fn, params, fixed, inputs, targets)

    def _batches(self):
        return sized_batches(self.data, self.device, self.dtype)

    # -- products --------------------------------------------------------------------------
    def clear_cache(self) -> None:
        """Drop the kept gradient graphs (graph reuse); the next product rebuilds them."""
        self._cache = None
        self._cache_refused_key = None

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the kept gradient graphs or tapes (0 when none are kept)."""
        return self._cache.nbytes if self._cache is not None else 0

    def _state_key(self) -> tuple:
        """Identity of the model state the kept graphs are valid for (:func:`state_key`)."""
        return state_key(self.model)

    def _cache_budget(self) -> int:
        return self.cache_bytes if self.cache_bytes is not None else default_budget(self.device)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        fixed = self._fixed_state()
        acc_dtype = torch.float64 if self.dtype != torch.float64 else self.dtype
        K = V.shape[1]
        # the accumulator is laid out (K, dim): each column's product is a contiguous row, so the
        # per-parameter pieces are added in place (no concatenation, no float64 copy per batch)
        total = torch.zeros(K, self.dim, dtype=acc_dtype, device=self.device)
        key = self._state_key()
        if self._cache is not None and (self._cache.key != key or not self._cache.matches(self.model)):
            self._cache = None
        if self.method == "auto":  # the model's form now (a hook added since, a layer swapped)
            plan = sequential_plan(self.model, self.loss_fn, self.param_names)
            if plan != self._plan:
                self._plan, self._cache = plan, None
        if self._cache_refused_key is not None and self._cache_refused_key != key:
            self._cache_refused_key = None
        budget = (
            self._cache_budget()
            if self.method != "func" and self._cache is None and self._cache_refused_key is None
            else 0
        )
        method = self.method
        if method == "auto":
            method = "backward" if (K == 1 or self._cache is not None or budget > 0) else "func"
        with self._modes():
            if method == "func":
                count = self._func_pass(V, fixed, total)
            else:
                count = self._graph_pass(V, fixed, total, key, budget)
        total, count = reduce_sum(total, count, self.distributed)  # (K, dim), contiguous
        self.num_samples = count
        # the float64 accumulator, transposed: (dim, K) with each column contiguous (the
        # Lanczos layout); Operator._product casts it once to the dtype asked for
        return total.div_(count).T

    def _func_pass(self, V: torch.Tensor, fixed: dict, total: torch.Tensor) -> int:
        """One data pass of ``vmap(jvp(grad))`` products added to ``total`` (K, dim); the count."""
        count = 0
        w = self.parameters_vector()
        for index, size, (inputs, targets) in self._batches():
            HV = self._batch_hvp_func(w, fixed, inputs, targets, index, V)
            total.T.add_(HV, alpha=float(size))
            self._check_finite(total, index)
            count += size
        return count

    def _graph_pass(self, V: torch.Tensor, fixed: dict, total: torch.Tensor, key: tuple,
                    budget: int) -> int:
        """One pass of double-backward products added to ``total`` (K, dim), through the kept
        graphs when there are, else building them (and keeping them when ``budget > 0`` and the
        whole pass fits in it: all or nothing); the count."""
        K = V.shape[1]
        count = 0
        # V split once per product into contiguous per-parameter blocks (K, *shape)
        Vt = V.T.contiguous()
        blocks = [b.reshape(K, *s) for b, s in zip(torch.split(Vt, self._numels, 1), self._shapes)]
        blocks = [b if b.is_contiguous() else b.contiguous() for b in blocks]
        pieces = [t.view(K, *s) for t, s in zip(torch.split(total, self._numels, 1), self._shapes)]
        cols = columns(self._plan, blocks) if self._plan is not None else None
        if self._cache is not None:
            return self._cached_pass(blocks, pieces, total, cols)
        cache = GraphCache(key, budget, self.model) if budget > 0 else None
        self._choice = ColumnsChoice()  # the columns' mode, over the graphs of this pass
        values = effective_values(self.model, self.param_names)
        leaves = [values[n] for n in self.param_names]
        weights = {**fixed, **values} if self._plan is not None else None
        largest = 0
        for index, size, (inputs, targets) in self._batches():
            tape = record(self._plan, weights, inputs, targets) if self._plan is not None else None
            if tape is not None:
                check_batch_loss(tape.loss, index)
                ws, gs, nbytes = tape, None, tape.nbytes
            else:
                ws, gs = self._batch_graph(leaves, fixed, inputs, targets, index, cache)
                largest = cache.largest if cache is not None else largest
                nbytes = None
            keep = cache is not None and cache.add(index, size, ws, gs, nbytes)
            if cache is not None and not keep:
                self._cache_refused_key, cache = key, None  # over budget: keep none
            self._apply_graph(ws, gs, blocks, pieces, float(size), keep=keep, largest=largest,
                              cols=cols)
            self._check_finite(total, index)
            count += size
        self._cache = cache  # kept only once the whole pass fitted in the budget
        return count

    def _cached_pass(self, blocks: list, pieces: list, total: torch.Tensor, cols) -> int:
        """One pass through the kept graphs, added to ``total`` (K, dim); the count. Finiteness
        is checked once, on the whole sum (a running total is finite iff every batch product
        so far was); only when it is not, the pass is redone batch by batch into a scratch
        total to name the first batch whose product made it non-finite (the same arithmetic,
        so the same batch as a check after every batch)."""
        count = 0
        largest = self._cache.largest
        for _, size, ws, gs in self._cache.entries:
            self._apply_graph(ws, gs, blocks, pieces, float(size), keep=True, largest=largest,
                              cols=cols)
            count += size
        if not all_finite(total):
            scratch = torch.zeros_like(total)
            parts = [t.view(p.shape) for t, p in zip(torch.split(scratch, self._numels, 1), pieces)]
            for index, size, ws, gs in self._cache.entries:
                self._apply_graph(ws, gs, blocks, parts, float(size), keep=True, largest=largest,
                                  cols=cols)
                self._check_finite(scratch, index)
        return count

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
                check_batch_loss(loss_of(w), index)
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
        check_batch_loss(loss.detach(), index)
        return HV

    def _batch_graph(self, leaves, fixed, inputs, targets, index, cache):
        """The batch's gradient graph: per-parameter leaves ``ws`` (no flatten/split in the
        graph) and ``gs = ∇L_b(ws)`` with ``create_graph=True``; the bytes it saves are counted
        into ``cache`` when given."""
        hooks = cache.counting_hooks() if cache is not None else contextlib.nullcontext()
        rules = ConvRules() if self._has_conv else contextlib.nullcontext()
        with torch.enable_grad(), hooks, rules:
            ws = [p.requires_grad_(True) for p in (leaf.detach() for leaf in leaves)]
            loss = self._loss(dict(zip(self.param_names, ws)), fixed, inputs, targets)
            check_batch_loss(loss, index)
            gs = torch.autograd.grad(loss, ws, create_graph=True)
        if self._has_conv:
            self._columns = self._choice.update(gs, rules.largest_bytes)
        return ws, gs

    def _apply_graph(self, ws, gs, blocks, pieces, size, keep, largest=0, cols=None):
        """``size · H_b V`` added to ``pieces``: from a :class:`~._pearlmutter.Tape` (``ws``) by
        :func:`~._pearlmutter.tape_product` with the product's ``cols``; else through the graph
        (:func:`apply_graph`): convolutional models by their :class:`ColumnsChoice`; the others
        in one batched backward (``is_grads_batched``) unless the graphs' ``largest`` saved
        tensor says one column at a time (:func:`column_loop`)."""
        if isinstance(ws, Tape):
            tape_product(self._plan, ws, cols, pieces, size, blocks[0].shape[0])
            return
        mode, most = self._columns
        if mode == "engine" and column_loop(largest, self.device, torch.get_num_threads()):
            mode = False
        chunk = self.chunk_size if most is None else min(self.chunk_size or most, most)
        apply_graph(ws, gs, blocks, pieces, size, keep, chunk, mode)

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
                    check_batch_loss(loss, index)
                    (g,) = torch.autograd.grad(loss, flat)
                gsum.add_(g.to(acc_dtype), alpha=float(size))
                lsum += float(loss.detach()) * size
                losses.append(float(loss.detach()))
                sizes.append(size)
        packed, count = reduce_sum(torch.cat([gsum, lsum]), sum(sizes), self.distributed)
        gsum, lsum = packed[: self.dim], packed[self.dim :]
        losses, sizes = gather_batches(losses, sizes, self.distributed)
        self.num_samples = count
        return float(lsum.item() / count), (gsum / count).to(self.dtype), losses, sizes

    def batch_losses(self) -> tuple[list[float], list[int]]:
        """Per-batch (mean) losses and batch sizes at the current weights, by forward passes
        only (when distributed: every rank's batches, in rank order, on every rank). The default
        loss tolerance ε is their standard deviation (:func:`phasetrans.estimate_eps`)."""
        params = effective_values(self.model, self.param_names)
        fixed = self._fixed_state()
        losses, sizes = [], []
        with self._modes(), torch.no_grad():
            for index, size, (inputs, targets) in self._batches():
                loss = self._loss(params, fixed, inputs, targets)
                check_batch_loss(loss, index)
                losses.append(float(loss))
                sizes.append(size)
        return gather_batches(losses, sizes, self.distributed)

    def data_fingerprint(self) -> tuple[str, list[float]]:
        """What identifies the data and ``loss_fn`` (for checkpoints): the SHA-256 of every
        batch's inputs and targets (dtypes, shapes, bytes; in the fixed pass order) and the
        per-batch losses at the current weights, which differ when ``loss_fn`` does. One
        forward pass over the data plus hashing its bytes (about 1 GB/s on one core); when
        distributed, every rank's digest and losses, in rank order."""
        h = hashlib.sha256()
        named = dict(self.model.named_parameters())
        params = {n: named[n].detach() for n in self.param_names}
        fixed = self._fixed_state()
        losses = []
        with self._modes(), torch.no_grad():
            for index, (inputs, targets) in enumerate(self.data):
                digest_batch(h, index, batch_size(inputs), inputs, targets)
                inputs, targets = move_batch(inputs, targets, self.device, self.dtype)
                loss = self._loss(params, fixed, inputs, targets)
                check_batch_loss(loss, index)
                losses.append(float(loss))
        digests = [h.hexdigest()]
        if self.distributed:
            from ..distributed import all_gather_list

            digests, losses = all_gather_list(digests), all_gather_list(losses)
        return "data:" + ",".join(digests), losses

    def __repr__(self) -> str:
        return (
            f"HessianOperator(dim={self.dim}, dtype={self.dtype}, device={self.device}, "
            f"params={len(self.param_names)} tensors, method={self.method!r}, "
            f"batchnorm={self.batchnorm!r}, distributed={self.distributed})"
        )


def _resolve_method(method: Any, batchnorm: str) -> str:
    """The product method: ``"auto"`` is ``"backward"`` with ``batchnorm="train"``, and
    ``"func"`` cannot be combined with it."""
    method = check_choice(method, "method", ("auto", "func", "backward"))
    if method == "auto" and batchnorm == "train":
        method = "backward"
    if method == "func" and batchnorm == "train":
        raise ValueError(
            "method='func' cannot be combined with batchnorm='train' (batch statistics are "
            "not vmappable); use method='backward'"
        )
    return method


def _resolve_distributed(distributed: Any) -> bool:
    """``None``: whether ``torch.distributed`` is initialised; ``True`` needs it to be."""
    if distributed is None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    elif not isinstance(distributed, bool):
        raise TypeError(f"distributed must be None or a bool, got {type(distributed).__name__}")
    if distributed and not (
        torch.distributed.is_available() and torch.distributed.is_initialized()
    ):
        raise ValueError("distributed=True needs an initialised torch.distributed process group")
    return distributed
