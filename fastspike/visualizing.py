"""Plots of spikes, membrane potentials and firing rates, written to PNG.

matplotlib is an optional dependency: importing this module works without it; calling a plot function
raises ImportError with the install command. Every function takes tensors or numpy arrays, uses the
non-interactive Agg backend, writes the figure to ``path`` when given, and returns the matplotlib
``Figure`` (close it with ``matplotlib.pyplot.close(fig)`` when you keep many).

- ``plot_spike_raster(spikes, path)``: spikes of shape [T, N] (time x neurons) as a raster plot.
- ``plot_membrane_heatmap(v, path)``: membrane potentials [T, N] as a heat map (time on x).
- ``plot_firing_rate_bars(rates, path)``: ``{layer name: rate}`` (e.g. ``FiringRateMonitor.summary()``)
  as a bar chart.
- ``plot_one_neuron_v_s(v, s, ...)``: one neuron's membrane trace with its spikes (SpikingJelly name).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

__all__ = ["plot_spike_raster", "plot_membrane_heatmap", "plot_firing_rate_bars", "plot_one_neuron_v_s"]

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]


def _plt():
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("fastspike.visualizing needs matplotlib: pip install matplotlib") from e
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo"):
        try:
            matplotlib.use("Agg", force=True)
        except Exception:
            pass
    import matplotlib.pyplot as plt

    return plt


def _np(x: ArrayLike, name: str, ndim: Optional[int] = None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    return x


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), format="png")
    return fig


def plot_spike_raster(spikes: ArrayLike, path=None, title: str = "spikes", xlabel: str = "time step",
                      ylabel: str = "neuron index", figsize=(8, 5), dpi: int = 100):
    """Raster plot of ``spikes`` [T, N]: a mark at (t, n) wherever spikes[t, n] != 0."""
    s = _np(spikes, "spikes", 2)
    plt = _plt()
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    t, n = np.nonzero(s)
    ax.scatter(t, n, marker="|", s=60, c="black", linewidths=1)
    ax.set_xlim(-0.5, s.shape[0] - 0.5)
    ax.set_ylim(-0.5, s.shape[1] - 0.5)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _finish(fig, path)


def plot_membrane_heatmap(v: ArrayLike, path=None, title: str = "membrane potential", xlabel: str = "time step",
                          ylabel: str = "neuron index", cmap: str = "viridis", figsize=(8, 5), dpi: int = 100):
    """Heat map of membrane potentials ``v`` [T, N] (time on the x axis) with a colour bar."""
    a = _np(v, "v", 2)
    plt = _plt()
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    im = ax.imshow(a.T, aspect="auto", origin="lower", cmap=cmap, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="v")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _finish(fig, path)


def plot_firing_rate_bars(rates: Union[Dict[str, float], ArrayLike], path=None, title: str = "firing rate per layer",
                          figsize=(8, 5), dpi: int = 100):
    """Bar chart of firing rates: a ``{name: rate}`` dict (one bar per layer) or a 1-D array."""
    if isinstance(rates, dict):
        names = list(rates)
        vals = np.asarray([float(rates[k]) for k in names])
    else:
        vals = _np(rates, "rates", 1)
        names = [str(i) for i in range(len(vals))]
    plt = _plt()
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    ax.bar(np.arange(len(vals)), vals, color="tab:blue")
    ax.set_xticks(np.arange(len(vals)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("firing rate")
    ax.set_ylim(0, max(1e-6, float(np.nanmax(vals)) * 1.1) if len(vals) else 1)
    ax.set_title(title)
    return _finish(fig, path)


def plot_one_neuron_v_s(v: ArrayLike, s: ArrayLike, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                        title: str = "V[t] and S[t] of the neuron", path=None, figsize=(8, 5), dpi: int = 100):
    """Membrane trace ``v`` [T] of one neuron (threshold and reset as dashed lines) above its spikes ``s`` [T]."""
    v = _np(v, "v", 1)
    s = _np(s, "s", 1)
    if v.shape != s.shape:
        raise ValueError(f"v and s must have the same length, got {v.shape} and {s.shape}")
    plt = _plt()
    fig, (ax0, ax1) = plt.subplots(2, 1, sharex=True, figsize=figsize, dpi=dpi, gridspec_kw={"height_ratios": [3, 1]})
    t = np.arange(v.shape[0])
    ax0.plot(t, v, marker=".")
    ax0.axhline(v_threshold, ls="--", c="tab:red", label="v_threshold")
    if v_reset is not None:
        ax0.axhline(v_reset, ls="--", c="tab:gray", label="v_reset")
    ax0.legend(loc="upper right")
    ax0.set_ylabel("V[t]")
    ax0.set_title(title)
    ax1.eventplot(t[s != 0], lineoffsets=0, colors="black")
    ax1.set_yticks([])
    ax1.set_ylabel("S[t]")
    ax1.set_xlabel("time step")
    return _finish(fig, path)
