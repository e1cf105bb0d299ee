"""Graph reuse for :class:`~phasetrans.linalg.hessian.HessianOperator`: kept per-batch gradient
graphs (or, for the feed-forward stacks of :mod:`._pearlmutter`, the batch's tape of forward and
backward values in their place), their memory, the state they are valid for, and the product of
one graph with columns.

Each batch's gradient graph ``g_b = ∇L_b(w)`` (built with ``create_graph=True``) gives
``H_b v`` as one backward of ``g_b`` with ``grad_outputs = v`` (Pearlmutter 1994); keeping the
graphs across products saves the forward and the first backward: about 2 gradient passes per
column instead of 3.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GraphCache", "state_key", "default_budget", "apply_graph", "column_loop", "LOOP_BYTES",
           "vmapped_backward"]


class GraphCache:
    """Kept per-batch gradient graphs of a :class:`HessianOperator` (graph reuse), with the
    bytes they hold: every storage the graphs save (counted once, through
    ``torch.autograd.graph.saved_tensors_hooks``; parameter storages excluded) plus the
    gradients themselves."""

    def __init__(self, key: tuple, budget: int, model: nn.Module):
        self.key = key
        self.budget = budget
        self.nbytes = 0
        self.largest = 0  # bytes of the largest tensor the first graph saved (column_loop)
        self.entries: list[tuple[int, int, list, tuple]] = []
        # the model's own storages (the graph's leaves alias the parameters) are not new memory
        self._seen: set[int] = {
            t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]
        }
        # a copy of every parameter and buffer: edits through ``p.data`` (the pruning idiom)
        # bump no version counter, so the key alone misses them; :meth:`matches` compares values
        self.values = [t.detach().clone() for t in [*model.parameters(), *model.buffers()]]
        self.nbytes += sum(v.numel() * v.element_size() for v in self.values)

    def matches(self, model: nn.Module) -> bool:
        """Whether every parameter and buffer still holds the values the graphs were built at
        (``torch.equal`` per tensor, one read of the model per product. Measured on the
        2-core CPU, loaded: 3.9 ms for a 1M-weight MLP, against 42 ms for one forward and
        backward of a single 256-sample batch; memory: one copy of the model, counted in
        ``nbytes``)."""
        tensors = [*model.parameters(), *model.buffers()]
        return len(tensors) == len(self.values) and all(
            t.shape == v.shape and t.dtype == v.dtype and torch.equal(t.detach(), v)
            for t, v in zip(tensors, self.values)
        )

    def counting_hooks(self):
        def pack(t: torch.Tensor) -> torch.Tensor:
            if not self.entries:  # the first graph decides for all (one arithmetic per operator)
                self.largest = max(self.largest, t.numel() * t.element_size())
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in self._seen:
                self._seen.add(ptr)
                self.nbytes += storage.nbytes()
            return t

        return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)

    def add(self, index: int, size: int, ws, gs: tuple | None, nbytes: int | None = None) -> bool:
        """Keep one batch's graph (or, with ``nbytes`` given, another record of the batch that
        holds that many bytes, e.g. a :class:`~._pearlmutter.Tape` in ``ws``); ``False`` (and
        nothing kept) once over the budget."""
        self.nbytes += nbytes if nbytes is not None else sum(g.numel() * g.element_size() for g in gs)
        if self.nbytes > self.budget:
            self.entries.clear()
            return False
        self.entries.append((index, size, ws, gs))
        return True


def state_key(model: nn.Module) -> tuple:
    """Identity of everything a kept graph depends on besides the data: each parameter's and
    buffer's object, storage, version counter (bumped by in-place changes), shape and dtype."""
    return tuple(
        (name, id(t), t.data_ptr(), t._version, tuple(t.shape), t.dtype, str(t.device))
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    )


def default_budget(device: torch.device) -> int:
    """The default memory budget of the kept graphs: a quarter of a GPU's free memory, 1 GiB on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free // 4)
    return 1 << 30


def apply_graph(
    ws: list, gs: tuple, blocks: list, pieces: list, size: float, keep: bool,
    chunk_size: int | None, batched: bool | str,
) -> None:
    """``size · H_b V`` added to ``pieces``: backward of the gradient graph ``gs = ∇L_b(ws)`` for
    each column of the per-parameter ``blocks`` (one batched backward per ``chunk_size`` columns
    when ``batched``: ``"vmap"`` through ``torch.func.vmap``, whose batching rules cover
    convolutions, any other true value through ``is_grads_batched``); ``keep`` retains the
    graph after the last column."""
    K = blocks[0].shape[0] if blocks else 0
    if K > 1 and batched:
        step = chunk_size or K
        for lo in range(0, K, step):
            hi = min(K, lo + step)
            chunk = [b[lo:hi] for b in blocks]
            if batched == "vmap":
                hvs = vmapped_backward(gs, ws, chunk)
                if hvs is None:  # no batched backward through this graph: loop over the chunk
                    _loop_columns(ws, gs, blocks, pieces, size, keep or hi < K, lo, hi)
                    continue
            else:
                hvs = torch.autograd.grad(
                    gs, ws, grad_outputs=chunk, retain_graph=keep or hi < K,
                    is_grads_batched=True,
                )
            for piece, hv in zip(pieces, hvs):
                piece[lo:hi].add_(hv, alpha=size)
        return
    _loop_columns(ws, gs, blocks, pieces, size, keep, 0, K)


def _loop_columns(ws, gs, blocks, pieces, size, keep, lo, hi) -> None:
    """Columns ``lo..hi-1`` one backward each; ``keep`` retains the graph after the last."""
    for k in range(lo, hi):
        hvs = torch.autograd.grad(
            gs, ws, grad_outputs=[b[k] for b in blocks], retain_graph=keep or k < hi - 1
        )
        for piece, hv in zip(pieces, hvs):
            piece[k].add_(hv, alpha=size)


def vmapped_backward(gs: tuple, ws: list, grad_outputs: list) -> tuple | None:
    """``torch.autograd.grad(gs, ws, v)`` for every row ``v`` of the batched ``grad_outputs`` in
    one backward, vectorised by ``torch.func.vmap`` (the functorch batching rules; the engine's
    own ``is_grads_batched`` uses the legacy rules, which have none for convolutions). The graph
    is retained; ``None`` when a node of the graph cannot run batched (the caller loops)."""

    def vjp(*vs):
        return torch.autograd.grad(gs, ws, grad_outputs=vs, retain_graph=True)

    try:
        return torch.func.vmap(vjp)(*grad_outputs)
    except RuntimeError:
        return None


#: the size, in bytes, of a kept graph's largest saved tensor from which, on CPU, the columns go
#: through the graph one at a time (:func:`column_loop`)
LOOP_BYTES = 1 << 17


def column_loop(largest: int, device: torch.device, threads: int) -> bool:
    """Whether several columns go through a kept graph one backward each rather than in one
    batched backward (``is_grads_batched``): on CPU with one thread (``threads``,
    ``torch.get_num_threads()``), when the first kept graph's largest saved tensor (``largest``
    bytes, :attr:`GraphCache.largest`) has at least :data:`LOOP_BYTES` (128 KiB). Without kept
    graphs (``cache_bytes=0``, or over the budget) the products stay batched.

    The batched backward copies its ``K``-fold tensors around every matmul (``matmul`` of an
    unbatched by a batched operand folds the batch with a ``contiguous`` copy) and adds them up
    in the engine: past the L2 cache that memory traffic costs more than ``K`` separate backwards
    save in per-operation overhead. Measured on the 2-core Intel Xeon, one thread (float32,
    K = 8, 7 batches of 256 random 64-feature inputs; cost per column in gradient passes, loop
    vs batched; load 2-3): MLP 64-256-256-10 (largest saved tensor 256 KiB) 1.70 vs 2.37, and
    ``slq`` of the digits MLP (40 steps x 8 probes) 9.7 vs 13.2 CPU seconds; 64-1024-1024-10
    2.39 vs 4.42; 64-128-128-10 (128 KiB) 1.32 vs 1.96; 64-64-32-10 (64 KiB) 1.14 vs 0.85,
    where the batched backward stays. With 2 threads the loop's many small parallel operations
    give most of the gain back (``slq`` of the digits MLP 6.25 vs 6.65 s with the default OpenMP
    policy on a quiet machine, best of 4 interleaved; 9.9 vs 7.4 s with the PASSIVE policy, the
    command line's, at load 1-2), so several threads keep the batched backward (which also won
    on an AMD EPYC, issue 8: 1.13 vs 1.85 gradient passes per column).
    """
    return device.type == "cpu" and threads == 1 and largest >= LOOP_BYTES
