"""Shared helpers of the model zoo: neuron factory checks and the offline 'pretrained' loader."""
from __future__ import annotations

import os
from typing import Callable, Optional

import torch
import torch.nn as nn

__all__ = ["checkpoint_dir", "load_pretrained", "require_neuron"]


def require_neuron(spiking_neuron: Optional[Callable], model: str) -> Callable:
    if spiking_neuron is None:
        raise TypeError(f"{model}: pass spiking_neuron= (a neuron class such as fastspike.neuron.IFNode "
                        "or LIFNode); its extra keyword arguments go to the neuron")
    if not callable(spiking_neuron):
        raise TypeError(f"{model}: spiking_neuron must be callable, got {type(spiking_neuron).__name__}")
    return spiking_neuron


def checkpoint_dir() -> str:
    """Where pretrained checkpoints are looked up: ``$TORCH_HOME/hub/checkpoints`` (torch.hub's cache,
    the same place SpikingJelly's downloads land), i.e. ``torch.hub.get_dir() + '/checkpoints'``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def load_pretrained(model: nn.Module, arch: str, url: str) -> nn.Module:
    """Load the checkpoint SpikingJelly would download for ``arch`` from the local torch.hub cache.

    fastspike never downloads: the file named by ``url`` must already be in ``checkpoint_dir()``.
    """
    fname = os.path.basename(url)
    path = os.path.join(checkpoint_dir(), fname)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"pretrained=True for {arch}: fastspike does not download weights. Put the checkpoint file "
            f"{fname!r} (from {url}) at {path} (torch.hub's cache; set TORCH_HOME to move it), or build the "
            f"model with pretrained=False and call model.load_state_dict(torch.load(<your file>)).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model.load_state_dict(state)
    return model
