"""Make a converted ``torch.fx.GraphModule`` run in both step modes (``functional.set_step_mode(snn, 'm')``).

A converted SNN holds stateless ANN operations (convolutions, pooling, reshapes, additions, ...) and step modules
(neurons, voltage scalers). fastspike's adapter needs no per-operation rules: in 'm' mode the whole graph runs
on the time steps folded into the batch, [T, N, *] -> [T*N, *], and only the step modules see the sequence
layout: a ``TimeUnfold`` node before each of them and a ``TimeFold`` node after. The graph's inputs are folded
and its outputs unfolded. In 's' mode every fold node is the identity, so the single-step graph is unchanged.

So every operation that treats dimension 0 as the batch of independent samples (anything an ANN does in eval
mode except reductions over the batch) works in 'm' mode, without rewriting. The fold modules hold no
parameters: the state_dict is unchanged.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Type

import torch
import torch.fx as fx
import torch.nn as nn

from fastspike import base

__all__ = ["TimeFold", "TimeUnfold", "adapt_step_mode_graph"]


class _TimeContext:
    """The number of time steps of the sequence being run, shared by the fold modules of one graph."""

    __slots__ = ("T",)

    def __init__(self):
        self.T: Optional[int] = None


class TimeFold(nn.Module, base.StepModule):
    """'m': [T, N, *] -> [T*N, *] (and records T); 's': the identity. Non-tensors pass unchanged."""

    def __init__(self, context: _TimeContext, records: bool = False, step_mode: str = "s"):
        super().__init__()
        self.context = context
        self.records = records  # graph inputs record T; folds after a step module only reshape
        self.step_mode = step_mode

    def forward(self, x):
        if self.step_mode == "s" or not isinstance(x, torch.Tensor):
            return x
        if x.dim() < 2:
            raise ValueError(f"step_mode='m' expects a sequence [T, N, *], but got a tensor of shape "
                             f"{tuple(x.shape)}; use functional.set_step_mode(net, 's') for single steps.")
        if self.records:
            self.context.T = x.shape[0]
        return x.flatten(0, 1)


class TimeUnfold(nn.Module, base.StepModule):
    """'m': [T*N, *] -> [T, N, *] with the T recorded by the graph's input fold; 's': the identity."""

    def __init__(self, context: _TimeContext, step_mode: str = "s"):
        super().__init__()
        self.context = context
        self.step_mode = step_mode

    def forward(self, x):
        if self.step_mode == "s" or not isinstance(x, torch.Tensor):
            return x
        T = self.context.T
        if T is None or x.dim() < 1 or x.shape[0] % T:
            raise ValueError(f"step_mode='m': cannot unfold a tensor of shape {tuple(x.shape)} into [T={T}, N, *]; "
                             "an operation of the network mixes samples of the batch, which sequences do not allow.")
        return x.reshape(T, x.shape[0] // T, *x.shape[1:])


def _add(gm: fx.GraphModule, prefix: str, module: nn.Module, counter: list) -> str:
    while True:
        name = f"{prefix}_{counter[0]}"
        counter[0] += 1
        if not hasattr(gm, name):
            gm.add_submodule(name, module)
            return name


def _elidable(gm: fx.GraphModule, node: fx.Node, folds: set) -> bool:
    """A fold read by one unfold only, and not the one that records T, can be skipped."""
    return node in folds and len(node.users) == 1 and not gm.get_submodule(node.target).records


def adapt_step_mode_graph(fx_model: fx.GraphModule, *, context: str,
                          wrap_module_types: Tuple[Type[nn.Module], ...] = (),
                          safe_module_types: Tuple[Type[nn.Module], ...] = (),
                          safe_call_functions: Tuple[Callable[..., Any], ...] = ()) -> fx.GraphModule:
    """Insert the time fold/unfold nodes (module docstring) so that ``fx_model`` runs in 's' and 'm' modes.

    ``context`` names the graph in errors. ``wrap_module_types``, ``safe_module_types`` and
    ``safe_call_functions`` are SpikingJelly's per-type lists; they are accepted and not needed (every
    stateless operation runs on the folded batch)."""
    if not isinstance(fx_model, fx.GraphModule):
        raise TypeError(f"adapt_step_mode_graph ({context}): fx_model must be a torch.fx.GraphModule, but got "
                        f"{type(fx_model).__name__}.")
    graph = fx_model.graph
    ctx = _TimeContext()
    counter = [0]
    folds = set()
    for node in list(graph.nodes):
        if node.op == "placeholder":
            name = _add(fx_model, "step_mode_time_fold", TimeFold(ctx, records=True), counter)
            with graph.inserting_after(node):
                new = graph.call_module(name, (node,))
            node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)
            folds.add(new)
        elif node.op == "call_module":
            module = fx_model.get_submodule(node.target)
            if not isinstance(module, base.StepModule) or isinstance(module, (TimeFold, TimeUnfold)):
                continue
            for arg in dict.fromkeys(a for a in node.args if isinstance(a, fx.Node)):
                if _elidable(fx_model, arg, folds):  # unfold(fold(x)) is x
                    node.replace_input_with(arg, arg.args[0])
                    graph.erase_node(arg)
                    folds.discard(arg)
                    continue
                name = _add(fx_model, "step_mode_time_unfold", TimeUnfold(ctx), counter)
                with graph.inserting_before(node):
                    unfolded = graph.call_module(name, (arg,))
                node.replace_input_with(arg, unfolded)
            name = _add(fx_model, "step_mode_time_fold", TimeFold(ctx), counter)
            with graph.inserting_after(node):
                new = graph.call_module(name, (node,))
            node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)
            folds.add(new)
        elif node.op == "output":
            def unfold(arg: fx.Node) -> fx.Node:
                if _elidable(fx_model, arg, folds):
                    return arg.args[0]
                name = _add(fx_model, "step_mode_time_unfold", TimeUnfold(ctx), counter)
                with graph.inserting_before(node):
                    return graph.call_module(name, (arg,))

            node.args = fx.node.map_arg(node.args, unfold)
    for fold in list(folds):
        if not fold.users:
            graph.erase_node(fold)
    graph.lint()
    fx_model.delete_all_unused_submodules()
    fx_model.recompile()
    return fx_model
