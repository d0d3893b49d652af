"""Spike losses (SpikingJelly 2.0.0's ``functional.loss``): kernel similarity between spike trains and the TET
loss (mean over time steps of each step's cross entropy)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kernel_dot_product", "spike_similar_loss", "temporal_efficient_training_cross_entropy"]


def kernel_dot_product(x: torch.Tensor, y: torch.Tensor, kernel: str = "linear", *args) -> torch.Tensor:
    """Kernel matrix K[i, j] = k(x[i], y[j]) for x [N, D], y [M, D].

    kernel: 'linear' (x.y), 'polynomial' ((x.y)^d, args=(d,)), 'sigmoid' (sigmoid(alpha x.y), args=(alpha,)),
    'gaussian' (exp(-|x-y|^2 / (2 sigma^2)), args=(sigma,)).
    """
    if kernel == "linear":
        return x @ y.t()
    if kernel == "polynomial":
        return (x @ y.t()).pow(args[0])
    if kernel == "sigmoid":
        return torch.sigmoid(args[0] * (x @ y.t()))
    if kernel == "gaussian":
        sigma = args[0]
        if sigma <= 0:
            raise ValueError(f"kernel_dot_product: sigma must be positive for the gaussian kernel, but got {sigma}.")
        d2 = x.square().sum(1, keepdim=True) + y.square().sum(1).unsqueeze(0) - 2 * (x @ y.t())
        return torch.exp(-d2 / (2 * sigma * sigma))
    raise ValueError(f"kernel_dot_product: kernel must be 'linear', 'polynomial', 'sigmoid' or 'gaussian', "
                     f"but got {kernel!r}.")


def spike_similar_loss(spikes: torch.Tensor, labels: torch.Tensor, kernel_type: str = "linear",
                       loss_type: str = "mse", *args) -> torch.Tensor:
    """Loss that makes the spike trains of samples sharing a label similar and the others dissimilar.

    :param spikes: [N, *] spike trains (flattened per sample)
    :param labels: [N, C] multi-hot labels
    :param loss_type: 'mse', 'l1' or 'bce' between the kernel similarity and the label co-occurrence (0/1)
    """
    spikes = spikes.flatten(1)
    sim_p = kernel_dot_product(spikes, spikes, kernel_type, *args)
    if kernel_type == "linear":
        norm = spikes.norm(p=2, dim=1, keepdim=True)
        sim_p = sim_p / (norm @ norm.t() + 1e-8)
    labels = labels.float()
    sim = (labels @ labels.t()).clamp_max(1)
    if loss_type == "mse":
        return F.mse_loss(sim_p, sim)
    if loss_type == "l1":
        return F.l1_loss(sim_p, sim)
    if loss_type == "bce":
        return F.binary_cross_entropy(sim_p, sim)
    raise ValueError(f"spike_similar_loss: loss_type must be 'mse', 'l1' or 'bce', but got {loss_type!r}.")


def temporal_efficient_training_cross_entropy(x_seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """TET loss (Deng et al., ICLR 2022): the mean over time steps of the cross entropy of every step's
    output, ``mean_t CE(x_seq[t], target)``.

    :param x_seq: [T, N, C] (or [T, N, C, *] for dense prediction) logits of every step
    :param target: [N] class indices (or [N, *])
    """
    if x_seq.dim() < 3:
        raise ValueError("temporal_efficient_training_cross_entropy: x_seq must have shape [T, N, C, *], "
                         f"but got shape {tuple(x_seq.shape)}.")
    T = x_seq.shape[0]
    # [T, N, C, *] -> [N, C, T, *]; cross_entropy then averages over N, T and *
    logits = x_seq.movedim(0, 2)
    tgt = target.unsqueeze(1).expand(target.shape[0], T, *target.shape[1:])
    return F.cross_entropy(logits, tgt)
