"""Case registry and peer frameworks.

A :class:`Case` names a family of measurements (e.g. ``neuron.lif``), the suites it belongs to, the sizes it
runs at on each device (``points``), the modes it runs in ('train' = forward + backward, 'infer' = forward
only under ``torch.no_grad``) and a ``setup`` that builds every implementation for one size and mode.
Case modules register themselves with :func:`register`; a module whose fastspike feature has not landed
reports that through ``available`` and is listed as unavailable instead of failing.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["Case", "Ctx", "register", "CASES", "PEERS", "Peer", "peer_status", "SUITES"]

SUITES = {
    "default": "neurons (IF/LIF/PLIF/QIF/EIF), PSN and linear_scan, event-driven synapses, SEW ResNet step; sized "
               "for 2 CPU cores (< 5 min)",
    "full": "everything in 'default' plus larger sizes and a sweep over T",
    "neuron": "IF/LIF/PLIF/QIF/EIF only",
    "psn": "PSN family and linear_scan",
    "synapse": "event-driven Linear/Conv2d across spike densities",
    "models": "one training step of a small SEW ResNet",
    "graphs": "SEW ResNet-18 training step eager / torch.compile / CUDA graph, fastspike and SpikingJelly (compiles: "
              "about a minute more)",
    "open-neuromorphic": "Open Neuromorphic framework benchmark: Linear + LIF, batch 16, T=500, 4k/8k/16k neurons",
}


@dataclass
class Peer:
    name: str
    module: str
    pip: str
    label: str


PEERS: Dict[str, Peer] = {
    "spikingjelly": Peer("spikingjelly", "spikingjelly.activation_based",
                         "pip install --no-deps spikingjelly==2.0.0", "SpikingJelly 2.0"),
    "snntorch": Peer("snntorch", "snntorch", "pip install --no-deps snntorch", "snnTorch"),
    "norse": Peer("norse", "norse.torch", "pip install --no-deps norse nir nirtorch", "Norse"),
}


def peer_status(name: str) -> Tuple[bool, str]:
    """(installed, version or the reason it cannot be imported). Imports the peer on first use."""
    peer = PEERS[name]
    try:
        importlib.import_module(peer.module)
    except Exception as e:  # ImportError, or a peer that breaks at import time
        return False, f"{type(e).__name__}: {e}".splitlines()[0]
    top = peer.module.split(".")[0]
    try:
        from importlib.metadata import version
        return True, version(top)
    except Exception:
        mod = importlib.import_module(top)
        return True, str(getattr(mod, "__version__", "unknown"))


@dataclass
class Ctx:
    """What a case's setup gets besides its size: device, dtype, peers asked for, flags."""
    device: str = "cpu"
    dtype: Any = None
    peers: Sequence[str] = ()
    quick: bool = False
    suite: str = "default"
    seed: int = 0


@dataclass
class Case:
    name: str
    family: str
    suites: Tuple[str, ...]
    description: str
    points: Callable[[Ctx], List[Dict[str, Any]]]
    setup: Callable[[Dict[str, Any], str, Ctx], list]
    modes: Tuple[str, ...] = ("train", "infer")
    x_axis: Optional[str] = None  # parameter plotted on the x axis ('T', 'density', ...)
    available: Callable[[], Optional[str]] = field(default=lambda: None)
    label: Callable[[Dict[str, Any]], str] = field(default=lambda p: ", ".join(f"{k}={v}" for k, v in p.items()))
    summarize: Optional[Callable[[list], List[str]]] = None  # lines computed from all of a run's tables


CASES: Dict[str, Case] = {}


def register(case: Case) -> Case:
    assert case.name not in CASES, case.name
    CASES[case.name] = case
    return case


def feature(path: str) -> Optional[str]:
    """None if ``fastspike.<module>.<attr>`` exists, else a one-line reason (for Case.available)."""
    mod, _, attr = path.rpartition(".")
    try:
        m = importlib.import_module(mod)
    except Exception as e:
        return f"{mod} is not available ({type(e).__name__}: {e})".splitlines()[0]
    if not hasattr(m, attr):
        return f"{path} does not exist in this fastspike version"
    return None
