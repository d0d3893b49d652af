"""CUDA graphs for spiking networks: capture a whole training (or inference) step once, replay it per batch.

A training step of a deep SNN launches hundreds of small kernels, and in eager mode the host cannot launch them
as fast as an H200 runs them (SEW ResNet-18, T=4, batch 32: about 18-22 ms eager against 4 ms of GPU work; see
docs/cuda_graphs.md). A CUDA graph records the kernels of one step and replays them with one launch. fastspike's
GPU ops are safe to record: they never synchronise with the host, and a neuron whose state was reset takes its
initial potential as a number, not a new tensor.

Two ways to get there:

* ``torch.compile(model, mode="reduce-overhead")``: Inductor records CUDA graphs of the compiled forward and
  backward; fastspike's ops are torch.library custom ops, so they are part of them.
* ``CudaGraphStep(fn)`` / ``training_step(model, loss_fn, optimizer)`` below, for eager code: the step function
  is run a few times on a side stream (warm-up), recorded once, then replayed.

Rules (checked where possible, with errors that say what to change):

* Static shapes: every call must pass tensors of the recorded shapes, dtypes and devices; a call with other
  metadata records a second graph (each graph keeps its own memory), up to ``max_graphs``.
* The step begins from a reset state: ``functional.reset_net(model)`` inside the step. Resetting does no device
  work and allocates nothing (every state becomes its initial number), so it records as nothing, and the first
  time step's kernels take the initial potential as a constant -- each replay starts from the reset state. A
  state carried from one replay to the next is not supported: a neuron's state after a step is a new tensor.
* No neuron with ``store_v_seq=True`` (its per-step potentials would be recorded buffers that every replay
  overwrites behind the attribute a user reads).
* Outputs are the recorded buffers: the next call overwrites them (``.clone()`` what you keep).
* The optimizer must run on the device without host synchronisation (SGD; Adam/AdamW with ``capturable=True``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn

from .functional import reset_net

__all__ = ["CudaGraphStep", "training_step", "check_graph_safe", "GraphStats"]


def check_graph_safe(model: nn.Module) -> None:
    """Raise ValueError naming the first module that a CUDA graph cannot record correctly."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"check_graph_safe: model must be an nn.Module, but got {type(model).__name__}.")
    for name, module in model.named_modules():
        if getattr(module, "store_v_seq", False):
            raise ValueError(f"CUDA graphs need store_v_seq=False, but module {name or type(module).__name__!r} "
                             f"({type(module).__name__}) has store_v_seq=True: its v_seq would be a recorded buffer "
                             "that every replay overwrites. Set store_v_seq=False (or record v_seq as an output).")


@dataclass
class GraphStats:
    warmup_runs: int = 0
    captures: int = 0
    replays: int = 0


def _meta(tensors) -> Tuple:
    return tuple((tuple(t.shape), t.dtype, t.device, t.requires_grad) for t in tensors)


class CudaGraphStep:
    """Record ``fn(*tensors)`` in a CUDA graph on the first call (after ``warmup`` eager runs on a side stream) and
    replay it on the following calls, whose tensors are copied into the recorded inputs first. Returns what ``fn``
    returned during the recording (recorded buffers, overwritten by each call)."""

    def __init__(self, fn: Callable, warmup: int = 3, max_graphs: int = 4, model: Optional[nn.Module] = None):
        if not callable(fn):
            raise TypeError(f"CudaGraphStep: fn must be callable, but got {type(fn).__name__}.")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"CudaGraphStep: warmup must be an int >= 1 (eager runs before recording; they let "
                             f"cuDNN/cuBLAS pick their algorithms and allocate workspaces), but got {warmup!r}.")
        if isinstance(max_graphs, bool) or not isinstance(max_graphs, int) or max_graphs < 1:
            raise ValueError(f"CudaGraphStep: max_graphs must be an int >= 1, but got {max_graphs!r}.")
        if model is not None:
            check_graph_safe(model)
        self.fn, self.warmup, self.max_graphs = fn, warmup, max_graphs
        self.stats = GraphStats()
        self._graphs: Dict[Tuple, tuple] = {}  # metadata -> (graph, static inputs, static outputs)
        self._stream = None

    def _check(self, tensors) -> torch.device:
        if not tensors:
            raise ValueError("CudaGraphStep: call it with the step's input tensors (at least one).")
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"CudaGraphStep: argument {i} must be a tensor (a recorded input), but got "
                                f"{type(t).__name__}; bind other arguments into fn (functools.partial).")
            if not t.is_cuda:
                raise ValueError(f"CudaGraphStep: CUDA graphs record CUDA work, but argument {i} is on {t.device}. "
                                 "Move the model and the batch to a CUDA device (or call fn directly on the CPU).")
        return tensors[0].device

    def _record(self, tensors, key):
        device = tensors[0].device
        if self._stream is None:
            self._stream = torch.cuda.Stream(device=device)
        static_in = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in tensors)
        current = torch.cuda.current_stream(device)
        self._stream.wait_stream(current)
        with torch.cuda.stream(self._stream):
            for _ in range(self.warmup):
                self.fn(*static_in)
                self.stats.warmup_runs += 1
        current.wait_stream(self._stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._stream):
            static_out = self.fn(*static_in)
        self.stats.captures += 1
        self._graphs[key] = (graph, static_in, static_out)
        return static_out

    def __call__(self, *tensors: torch.Tensor):
        self._check(tensors)
        key = _meta(tensors)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= self.max_graphs:
                recorded = [k[0][0] for k in self._graphs]
                raise ValueError(f"CudaGraphStep: a CUDA graph replays fixed shapes; this call's first input has shape "
                                 f"{tuple(tensors[0].shape)}, and {len(self._graphs)} graphs (max_graphs) are already "
                                 f"recorded for shapes {recorded}. Pad or drop the last partial batch "
                                 "(DataLoader(drop_last=True)), or raise max_graphs.")
            out = self._record(tensors, key)
            graph, static_in, _ = self._graphs[key]
        else:
            graph, static_in, out = entry
        for dst, src in zip(static_in, tensors):
            dst.copy_(src)
        graph.replay()
        self.stats.replays += 1
        return out


def training_step(model: nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer, warmup: int = 3,
                  max_graphs: int = 4) -> CudaGraphStep:
    """A recorded training step: ``step(x, target)`` resets ``model``'s state, runs forward, ``loss_fn(output,
    target)``, backward and ``optimizer.step()`` in one graph replay, and returns the loss (a recorded 0-d tensor:
    read it with ``.item()`` when you need the number, which synchronises). The ``warmup`` runs before the recording
    are real training steps on the first batch, as in PyTorch's whole-network recipe."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"training_step: model must be an nn.Module, but got {type(model).__name__}.")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"training_step: optimizer must be a torch.optim.Optimizer, but got "
                        f"{type(optimizer).__name__}.")
    check_graph_safe(model)
    for group in optimizer.param_groups:
        if "capturable" in group and not group["capturable"] and type(optimizer).__name__ not in ("SGD",):
            warnings.warn(f"training_step: {type(optimizer).__name__} with capturable=False keeps its step count on "
                          "the host; create it with capturable=True for CUDA graphs.", RuntimeWarning, stacklevel=2)
            break
    def step(x, target):
        # gradients are allocated by the recorded backward itself (PyTorch's whole-network recipe): each replay
        # writes them afresh instead of accumulating
        optimizer.zero_grad(set_to_none=True)
        reset_net(model)
        loss = loss_fn(model(x), target)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return CudaGraphStep(step, warmup=warmup, max_graphs=max_graphs)
