"""Train a small spiking CNN on scikit-learn's bundled handwritten digits (offline, 1797 8x8 images).

    python -m fastspike.examples.digits                 # one process
    python -m fastspike.examples.digits --nproc 2       # DistributedDataParallel, 2 processes (gloo on CPU,
                                                        # NCCL when every rank has a GPU)
    python -m fastspike.examples.digits --compile       # the same training through torch.compile

Network (multi-step, T time steps, direct encoding: the image is the input current at every step):
conv3x3(1->16)-BN-LIF-maxpool, conv3x3(16->32)-BN-LIF-maxpool, flatten, linear(128->10); the class scores
are the linear outputs averaged over time, trained with cross-entropy and Adam. The first conv+BN sees
the same image at every step, so it runs once and its output is repeated over T (identical result,
T times less work). After training, BatchNorm statistics are recomputed from the training images
(``calibrate_bn``), then the test accuracy is measured; it is the last printed line.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastspike import functional, layer, neuron, surrogate


class DigitsSNN(nn.Module):
    def __init__(self, T: int = 4, channels: int = 16, tau: float = 2.0):
        super().__init__()
        self.T = T
        lif = dict(tau=tau, detach_reset=True, surrogate_function=surrogate.ATan(), step_mode="m")
        self.encoder = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.body = nn.Sequential(
            neuron.LIFNode(**lif),
            layer.MaxPool2d(2, 2, step_mode="m"),  # 8x8 -> 4x4
            layer.Conv2d(channels, 2 * channels, 3, padding=1, bias=False, step_mode="m"),
            layer.BatchNorm2d(2 * channels, step_mode="m"),
            neuron.LIFNode(**lif),
            layer.MaxPool2d(2, 2, step_mode="m"),  # 4x4 -> 2x2
            layer.Flatten(step_mode="m"),
            layer.Linear(2 * channels * 4, 10, step_mode="m"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 1, 8, 8] -> class scores [N, 10] (mean over T of the readout)."""
        current = self.encoder(x)
        x_seq = current.unsqueeze(0).expand(self.T, *current.shape)
        return self.body(x_seq).mean(0)


def load_data(seed: int = 0):
    """Digits scaled to [0, 1], stratified 75/25 split (1347 train, 450 test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.long)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.25, random_state=seed, stratify=d.target)
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> None:
    """Recompute BatchNorm running statistics of the final weights from the training images (a cumulative
    average over one pass). The running averages kept during training lag behind the changing weights,
    which hurts short runs; this makes evaluation independent of how long training was."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size])
        functional.reset_net(model)
    for m, mom in zip(bns, saved):
        m.momentum = mom


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        out = model(x[i:i + batch_size])
        functional.reset_net(model)
        correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
    model.train()
    return correct / len(y)


def train(args, rank: int = 0, world: int = 1, device: str = "cpu") -> float:
    torch.manual_seed(args.seed)
    x_tr, y_tr, x_te, y_te = load_data(args.seed)
    x_tr, y_tr, x_te, y_te = (t.to(device) for t in (x_tr, y_tr, x_te, y_te))
    model = DigitsSNN(T=args.T, channels=args.channels).to(device)
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device != "cpu" else None)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    if args.compile:  # Inductor: fastspike's neurons and pooling are custom ops inside the compiled graph
        net = torch.compile(net)
    steps_per_epoch = -(-len(y_tr) // (args.batch_size * world))
    if args.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, args.max_steps_per_epoch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch)
    show = rank == 0 and not args.no_progress
    try:
        from tqdm import tqdm
    except ImportError:  # progress bar is optional
        tqdm = None
    bar = tqdm(total=args.epochs * steps_per_epoch, desc="train", unit="step", disable=not show,
               file=sys.stdout, dynamic_ncols=True) if tqdm else None
    g = torch.Generator().manual_seed(args.seed)  # same permutation on every rank
    t0 = time.time()
    step_times = []
    for epoch in range(args.epochs):
        perm = torch.randperm(len(y_tr), generator=g)
        for step in range(steps_per_epoch):
            chunk = perm[step * args.batch_size * world:(step + 1) * args.batch_size * world]
            idx = chunk[rank::world].to(device)  # this rank's share of the global batch
            if len(idx) == 0:
                continue
            ts = time.perf_counter()
            out = net(x_tr[idx])
            loss = F.cross_entropy(out, y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            functional.reset_net(model)
            step_times.append(time.perf_counter() - ts)
            if bar is not None:
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
                bar.update(1)
    if bar is not None:
        bar.close()
    calibrate_bn(model, x_tr)
    acc = evaluate(model, x_te, y_te)
    if args.dump_params:
        os.makedirs(args.dump_params, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                   os.path.join(args.dump_params, f"rank{rank}.pt"))
        with open(os.path.join(args.dump_params, f"acc{rank}.txt"), "w") as f:
            f.write(str(acc))
    if rank == 0 and len(step_times) > 2:  # the median step after the first two (compilation happens there)
        print(f"median training step: {1e3 * float(np.median(step_times[2:])):.2f} ms"
              f"{' (torch.compile)' if args.compile else ''}", flush=True)
    if rank == 0:
        print(f"test accuracy: {100 * acc:.2f}% ({int(round(acc * len(y_te)))}/{len(y_te)} digits, T={args.T}, "
              f"{args.epochs} epochs, {world} process(es), {time.time() - t0:.1f} s)", flush=True)
    return acc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, args) -> None:
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() >= world
    backend = "nccl" if use_cuda else "gloo"
    device = f"cuda:{rank}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(rank)
    torch.set_num_threads(max(1, args.threads or (os.cpu_count() or 1) // world))
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        train(args, rank, world, device)
    finally:
        dist.destroy_process_group()


def parse_args(argv: Optional[list] = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("-T", "--T", type=int, default=4, help="time steps")
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nproc", type=int, default=1, help="processes for DistributedDataParallel")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (0: cores / nproc). Default 1: the tensors here are tiny and "
                        "thread synchronisation costs more than it saves (12 epochs: 1.6 s on 1 thread, 7.4 s on 2)")
    p.add_argument("--max-steps-per-epoch", type=int, default=0, help="shorten epochs (tests)")
    p.add_argument("--dump-params", default="", help="directory to save each rank's final state_dict (tests)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--compile", action="store_true", help="train through torch.compile (Inductor)")
    return p.parse_args(argv)


def main(argv: Optional[list] = None) -> Optional[float]:
    args = parse_args(argv)
    if args.nproc < 1:
        raise SystemExit("--nproc must be >= 1")
    if args.nproc == 1:
        torch.set_num_threads(args.threads or (os.cpu_count() or 1))
        return train(args)
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(args.nproc, _free_port(), args), nprocs=args.nproc, join=True)
    return None


if __name__ == "__main__":
    main()
