"""One training step of a small SEW ResNet-18 (and its forward only), fastspike against SpikingJelly 2.0.0.

Model: ``models.sew_resnet18(cnf='ADD', spiking_neuron=neuron.LIFNode, tau=2., surrogate_function=surrogate.Sigmoid(),
detach_reset=True, num_classes=10)`` (bench/bench_models.py's configuration; it measures the model-zoo issue's
size, T=4, batch 8, 64x64, and the fastspike.utils.pack_saved_spikes variant; the default suite here uses a
smaller input to stay within its time budget) in multi-step mode (``functional.set_step_mode(net, 'm')``), input
[T, B, 3, H, W] (CIFAR-sized), output averaged over T. Train = reset, forward, cross-entropy, backward and an
SGD step (lr 0: the weights stay as they were, so every timed step does the same work). Infer = forward
under ``torch.no_grad`` in eval mode. SpikingJelly runs its own ``model.sew_resnet18`` with the same keyword
arguments and fastspike's state_dict (the keys are the same). Compared: logits and the first convolution's
weight gradient (a few spikes may flip between frameworks' arithmetic deep in the network, so the tolerance
is looser than for single ops: 5% relative RMS).
"""
from __future__ import annotations

from typing import Callable, Dict, List

import torch

from ..core import Impl
from ..registry import Case, Ctx, PEERS, feature, peer_status, register


def _points(ctx: Ctx) -> List[Dict]:
    if ctx.quick:
        return [dict(T=2, B=2, HW=16)]
    if ctx.device.startswith("cuda"):  # fp32, and the same step under bf16 autocast (issue 21, item 4)
        return [dict(T=4, B=32, HW=32), dict(T=4, B=32, HW=32, amp="bf16")]
    if ctx.suite == "full":
        return [dict(T=4, B=4, HW=32), dict(T=4, B=4, HW=32, amp="bf16")]
    return [dict(T=4, B=4, HW=32)]


def _label(p):
    amp = f", {p['amp']} autocast" if p.get("amp") else ""
    return f"SEW-ResNet18 ADD LIF, T={p['T']} B={p['B']} 3x{p['HW']}x{p['HW']}{amp}"


def _import_sj_sew_resnet():
    """SpikingJelly's model zoo imports torchvision only for ``load_state_dict_from_url`` (pretrained
    downloads, unused here). Without torchvision, lend it torch.hub's function of the same name for the
    duration of the import, then remove the stand-in so nothing else sees a fake torchvision."""
    import importlib
    import sys
    import types
    try:
        return importlib.import_module("spikingjelly.activation_based.model.sew_resnet"), False
    except ModuleNotFoundError as e:
        if e.name is None or not e.name.startswith("torchvision"):
            raise
    names = ["torchvision", "torchvision.models", "torchvision.models.utils", "torchvision._internally_replaced_utils"]
    saved = {n: sys.modules.get(n) for n in names}
    try:
        for n in names:
            m = types.ModuleType(n)
            m.load_state_dict_from_url = torch.hub.load_state_dict_from_url
            sys.modules[n] = m
        sys.modules.pop("spikingjelly.activation_based.model.sew_resnet", None)
        return importlib.import_module("spikingjelly.activation_based.model.sew_resnet"), True
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def _build(sj: bool):
    if sj:
        from spikingjelly.activation_based import functional, neuron, surrogate
        sew_resnet, _ = _import_sj_sew_resnet()
    else:
        from ... import functional, neuron, surrogate
        from ...models import sew_resnet
    net = sew_resnet.sew_resnet18(cnf="ADD", spiking_neuron=neuron.LIFNode, tau=2.0,
                                  surrogate_function=surrogate.Sigmoid(), detach_reset=True, num_classes=10)
    functional.set_step_mode(net, "m")
    return net, functional.reset_net


AMP_NOTE = ("outputs not compared under autocast: in bf16, spike flips compound through the network, and each "
            "framework's own bf16 logits differ from its fp32 logits by ~1.2x their RMS (T=4, B=4, 32x32, untrained); "
            "the fp32 row checks that both run the same model")


def _step_fn(net, reset, x, y, mode, amp=None):
    """One step; ``amp`` ('bf16' / 'fp16' or None): the forward and the loss run inside torch.autocast."""
    import contextlib

    def region():
        if not amp:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[amp])

    if mode == "infer":
        net.eval()

        def fn():
            reset(net)
            with torch.no_grad(), region():
                logits = net(x).mean(0).float()
            return {} if amp else {"logits": logits}
        return fn
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    first = net.conv1.weight

    def fn():
        reset(net)
        opt.zero_grad(set_to_none=True)
        with region():
            logits = net(x).mean(0).float()
            loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        if amp:  # nothing that two frameworks could agree on: see AMP_NOTE
            return {}
        return {"logits": logits, "grad_conv1": first.grad}
    return fn


def batch(p, ctx: Ctx):
    """The SEW ResNet cases' inputs (images [T, B, 3, HW, HW] in [0, 2) and 10-class labels) on ctx.device, from
    ctx.seed; also seeds torch, so that the model built next has the same weights in every case."""
    g = torch.Generator().manual_seed(ctx.seed)
    x = torch.rand(p["T"], p["B"], 3, p["HW"], p["HW"], generator=g).to(ctx.device) * 2
    y = torch.randint(0, 10, (p["B"],), generator=g).to(ctx.device)
    torch.manual_seed(ctx.seed)
    return x, y


def _setup(p, mode, ctx: Ctx) -> List[Impl]:
    x, y = batch(p, ctx)
    net, reset = _build(sj=False)
    net = net.to(ctx.device)
    amp = p.get("amp")
    tol = {"logits": 5e-2, "grad_conv1": 5e-2}
    note = "models.sew_resnet18, neurons backend='auto'" + (f", {amp} autocast; {AMP_NOTE}" if amp else "")
    impls = [Impl("fastspike", _step_fn(net, reset, x, y, mode, amp), kind="fastspike", note=note)]

    def spikingjelly(label):
        try:
            sj, sj_reset = _build(sj=True)
            res = sj.load_state_dict(net.state_dict(), strict=False)
            if res.missing_keys or res.unexpected_keys:
                raise RuntimeError(f"state_dict keys differ: {res}")
            sj = sj.to(ctx.device)
            return [Impl(label, _step_fn(sj, sj_reset, x, y, mode, amp), kind="peer", tol=tol,
                         note="model.sew_resnet18 with fastspike's state_dict")]
        except Exception as e:
            return [Impl(label, None, status="error", reason=f"setup failed: {type(e).__name__}: {e}"[:200])]
    return impls + peer_rows(ctx, spikingjelly)


def peer_rows(ctx: Ctx, spikingjelly: Callable[[str], List[Impl]]) -> List[Impl]:
    """The rows of ``ctx.peers`` for a SEW ResNet case: SpikingJelly's from ``spikingjelly(label)`` when it is
    installed, a 'skipped' row when not, and 'n/a' for the frameworks without a SEW ResNet in their zoo."""
    rows = []
    for peer in ctx.peers:
        label = PEERS[peer].label
        if peer != "spikingjelly":
            rows.append(Impl(label, None, status="n/a", reason="no SEW ResNet in this framework's model zoo"))
            continue
        ok, info = peer_status(peer)
        if not ok:
            rows.append(Impl(label, None, status="skipped",
                             reason=f"not installed ({info}); install: {PEERS[peer].pip}"))
            continue
        rows += spikingjelly(label)
    return rows


register(Case(name="models.sew_resnet18", family="models", suites=("default", "full", "models"),
              description="SEW ResNet-18 (ADD, LIF tau=2, detach_reset) training step / forward, CIFAR-sized input",
              points=_points, setup=_setup, available=lambda: feature("fastspike.models.sew_resnet18"),
              label=_label))
