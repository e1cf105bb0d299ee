"""Normalising the ``data`` argument: a DataLoader / re-iterable of ``(inputs, targets)`` batches,
or a single ``(inputs, targets)`` tuple of tensors.

Batches of any other shape (HuggingFace-style dicts, longer tuples) go through a ``batch_fn(batch)
-> (inputs, targets)``; ``inputs`` may be a tensor, a tuple/list (the model's positional
arguments) or a dict (its keyword arguments): :func:`call_model`.

Dataset-level quantities weight each batch by its size ``|b|`` (the length of the first
dimension of ``inputs``), so an uneven last batch is counted exactly.
"""

from __future__ import annotations

import collections.abc
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

__all__ = ["Batches", "as_batches", "move_batch", "batch_size", "call_model", "model_args",
           "FixedOrder"]


def batch_size(inputs: Any) -> int:
    """Number of samples in a batch of ``inputs`` (the first dimension)."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() == 0:
            raise ValueError("data: batch inputs must have a batch dimension, got a 0-d tensor")
        return int(inputs.shape[0])
    if isinstance(inputs, (tuple, list)) and inputs and isinstance(inputs[0], torch.Tensor):
        return batch_size(inputs[0])
    if isinstance(inputs, Mapping):
        for value in inputs.values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                return int(value.shape[0])
        raise TypeError("data: dict batch inputs must hold at least one tensor with a batch dimension")
    raise TypeError(
        f"data: batch inputs must be a tensor, a tuple of tensors or a dict of tensors, got "
        f"{type(inputs).__name__}"
    )


def move_batch(inputs: Any, targets: Any, device: torch.device, dtype: torch.dtype):
    """Move a batch to ``device``; floating inputs (and floating targets) are cast to ``dtype``."""

    def move(t: Any) -> Any:
        if isinstance(t, torch.Tensor):
            if t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)
        if isinstance(t, (tuple, list)):
            return type(t)(move(x) for x in t)
        if isinstance(t, Mapping):
            return {k: move(x) for k, x in t.items()}
        return t

    return move(inputs), move(targets)


class Batches:
    """A re-iterable view of ``data`` that yields ``(inputs, targets)`` pairs and checks them;
    ``batch_fn(batch) -> (inputs, targets)`` is applied to each batch first when given."""

    def __init__(self, data: Any, name: str = "data", batch_fn: Callable[[Any], Any] | None = None):
        self.name = name
        self.batch_fn = batch_fn
        if batch_fn is not None and not callable(batch_fn):
            raise TypeError(
                f"batch_fn must be a callable batch -> (inputs, targets), got {type(batch_fn).__name__}"
            )
        if batch_fn is not None and isinstance(data, Mapping):
            self._source: Iterable = [data]  # one dict batch
        elif batch_fn is None and isinstance(data, Mapping):
            raise TypeError(
                f"{name} is a dict (one batch of named fields?); pass batch_fn=lambda b: "
                f"(inputs, targets) to say which fields the model takes and which are the targets"
            )
        elif isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(t, torch.Tensor) for t in data
        ):
            inputs, targets = data
            if batch_size(inputs) != (targets.shape[0] if targets.dim() > 0 else -1):
                raise ValueError(
                    f"{name}: inputs and targets must have the same first dimension, got "
                    f"{tuple(inputs.shape)} and {tuple(targets.shape)}"
                )
            self._source = [(inputs, targets)]
        elif isinstance(data, (torch.Tensor, str, bytes, dict)) or not isinstance(
            data, collections.abc.Iterable
        ):
            raise TypeError(
                f"{name} must be a DataLoader / iterable of (inputs, targets) batches or one "
                f"(inputs, targets) tuple of tensors, got {type(data).__name__}"
            )
        elif isinstance(data, collections.abc.Iterator):
            raise TypeError(
                f"{name} is a one-shot iterator (e.g. a generator); the estimators pass over the "
                f"data many times: pass a DataLoader or a list of (inputs, targets) batches"
            )
        else:
            self._source = data

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        count = 0
        for index, batch in enumerate(self._source):
            if self.batch_fn is not None:
                batch = self.batch_fn(batch)
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise TypeError(
                        f"batch_fn must return an (inputs, targets) pair, got "
                        f"{type(batch).__name__} for batch {index} of {self.name}"
                    )
            elif isinstance(batch, Mapping):
                raise TypeError(
                    f"{self.name}: batch {index} is a dict (keys {list(batch)[:8]}); pass "
                    f"batch_fn=lambda b: (inputs, targets), e.g. lambda b: ({{k: v for k, v in "
                    f"b.items() if k != 'labels'}}, b['labels'])"
                )
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise TypeError(
                    f"{self.name}: batch {index} must be an (inputs, targets) pair, got "
                    f"{type(batch).__name__}"
                )
            if len(batch) > 2:
                raise ValueError(
                    f"{self.name}: batch {index} has {len(batch)} elements; phasetrans takes "
                    f"(inputs, targets) pairs and would drop the rest (e.g. sample weights, "
                    f"which would change the loss): fold them into targets and loss_fn, or pass "
                    f"multiple inputs as one tuple: ((x1, x2), targets)"
                )
            inputs, targets = batch[0], batch[1]
            if batch_size(inputs) == 0:
                continue
            count += 1
            yield inputs, targets
        if count == 0:
            raise ValueError(f"{self.name} must contain at least one non-empty batch, got none")

    def generators(self) -> list[torch.Generator]:
        """The ``torch.Generator`` objects a DataLoader shuffles with (its own, its sampler's),
        each once: their state belongs to a resumable run (the global RNG's is kept apart)."""
        return loader_generators(self._source)

    def sizes(self) -> list[int]:
        """Batch sizes, in order (one pass over the data)."""
        return [batch_size(x) for x, _ in self]

    def __len__(self) -> int:
        return len(self._source)  # type: ignore[arg-type]


def as_batches(data: Any, name: str = "data", batch_fn: Callable[[Any], Any] | None = None) -> Batches:
    """Wrap ``data`` as :class:`Batches` (idempotent without ``batch_fn``; with one, the
    :class:`Batches` given is mapped through it)."""
    if isinstance(data, Batches) and batch_fn is None:
        return data
    return Batches(data, name=name, batch_fn=batch_fn)


def model_args(inputs: Any) -> tuple[tuple, dict]:
    """The positional and keyword arguments of ``model(...)`` for batch ``inputs``: a tuple/list
    is unpacked as positional arguments, a dict as keyword arguments, anything else is the one
    argument."""
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


def call_model(model: Any, inputs: Any) -> Any:
    """``model(inputs)``, ``model(*inputs)`` for a tuple/list, ``model(**inputs)`` for a dict."""
    args, kwargs = model_args(inputs)
    return model(*args, **kwargs)


def loader_generators(source: Any) -> list[torch.Generator]:
    """The ``torch.Generator`` objects a DataLoader draws its order from: its own ``generator``
    and its sampler's / batch sampler's (each once)."""
    found: list[torch.Generator] = []
    sampler = getattr(source, "sampler", None)
    batch_sampler = getattr(source, "batch_sampler", None)
    for owner in (source, sampler, batch_sampler, getattr(batch_sampler, "sampler", None)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found


class FixedOrder:
    """Every pass over ``data`` sees the same batches, also from a shuffling DataLoader.

    Each pass runs under a forked CPU RNG seeded with ``seed`` (a DataLoader without its own
    ``generator`` draws its order, and its workers' seeds, from the global CPU generator), and
    the loader's own generators (``loader.generator``, the sampler's) are set to the state they
    had when this object was made; after the pass the global RNG and those generators are put
    back as they were, so the caller's random streams do not move. Random augmentation drawn
    from the global RNG in the main process is frozen the same way (in worker processes it is
    seeded from the fixed base seed too)."""

    def __init__(self, data: Any, seed: int = 0):
        source = data._source if isinstance(data, Batches) else data
        self.generators = loader_generators(source)
        self.states = [g.get_state() for g in self.generators]
        self.seed = seed

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        current = [g.get_state() for g in self.generators]
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.seed)
            for g, state in zip(self.generators, self.states):
                g.set_state(state)
            try:
                yield
            finally:
                for g, state in zip(self.generators, current):
                    g.set_state(state)
