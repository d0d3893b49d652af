"""Random-configuration campaign of the synapse and pooling ops against torch (a longer run of what
tests/test_synapse_edges.py checks case by case).

    python tools/fuzz_synapse.py --n 1600 --seed 1            # C++ and torch backends
    TRITON_INTERPRET=1 python tools/fuzz_synapse.py --n 200 --backends triton

Each case draws shapes (zero-size dims included), stride / padding / dilation / groups, bias, dtype, spike
density, real-valued or binary input and the ``event_driven`` setting, then requires one of:

* the op's output and its gradients (x, weight, bias) equal ``F.conv2d`` / ``F.linear`` / ``F.max_pool2d`` to
  fp32 rounding (the relative RMS error of tests/helpers.py, which fails on NaN where torch has none);
* the same exception type as torch (a configuration torch refuses);
* a named ``ValueError`` where fastspike refuses by design (non-binary input with ``event_driven=True``,
  string padding with ``event_driven=True``).

Anything else (another exception, a mismatch, a crash of the process) is a finding; the summary counts each
outcome. Exit status 1 when there is a finding.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import traceback
import warnings

import torch
import torch.nn.functional as F

from fastspike import ops

REFUSED_BY_DESIGN = ("binary", "does not support padding")


def _rel(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref, out = ref.detach().double(), out.detach().double()
    if ref.shape != out.shape:
        return float("inf")
    if torch.isnan(out).ne(torch.isnan(ref)).any() or torch.isinf(out).ne(torch.isinf(ref)).any():
        return float("inf")
    keep = torch.isfinite(ref)
    if not keep.any():
        return 0.0
    err = (ref[keep] - out[keep]).pow(2).mean().sqrt()
    base = ref[keep].pow(2).mean().sqrt()
    return float(err / base) if base > 0 else float(err)


def _input(rng: random.Random, shape, binary: bool, density: float) -> torch.Tensor:
    if binary:
        return (torch.rand(shape) < density).float()
    return torch.randn(shape)


def _conv_case(rng: random.Random):
    groups = rng.choice([1, 1, 1, 2, 3])
    cin = groups * rng.randint(0 if rng.random() < 0.05 else 1, 3)
    cout = groups * rng.randint(1, 3)
    kh, kw = rng.randint(1, 4), rng.randint(1, 4)
    h, w = rng.randint(0 if rng.random() < 0.05 else 1, 10), rng.randint(1, 10)
    kwargs = dict(stride=(rng.randint(1, 3), rng.randint(1, 3)), dilation=(rng.randint(1, 2), rng.randint(1, 2)),
                  groups=groups)
    kwargs["padding"] = rng.choice([(rng.randint(0, 2), rng.randint(0, 2)), "same", "valid", 0])
    if kwargs["padding"] == "same":
        kwargs["stride"] = (1, 1)
    shapes = dict(x=(rng.randint(0 if rng.random() < 0.05 else 1, 3), cin, h, w), w=(cout, cin // groups, kh, kw),
                  b=(cout,))
    return "conv2d", shapes, kwargs


def _linear_case(rng: random.Random):
    k = rng.randint(0 if rng.random() < 0.05 else 1, 40)
    n = rng.randint(1, 20)
    lead = tuple(rng.randint(0 if rng.random() < 0.05 else 1, 4) for _ in range(rng.randint(1, 3)))
    return "linear", dict(x=(*lead, k), w=(n, k), b=(n,)), {}


def _pool_case(rng: random.Random):
    k = rng.randint(1, 3)
    kwargs = dict(kernel_size=k, stride=rng.choice([None, 1, 2]), padding=rng.randint(0, k // 2),
                  dilation=rng.randint(1, 2), ceil_mode=rng.random() < 0.3)
    shape = (rng.randint(0 if rng.random() < 0.05 else 1, 3), rng.randint(1, 3), rng.randint(1, 9), rng.randint(1, 9))
    return "max_pool2d", dict(x=shape), kwargs


def _torch_result(kind, x, w, b, kwargs):
    if kind == "conv2d":
        return F.conv2d(x, w, b, **kwargs)
    if kind == "linear":
        return F.linear(x, w, b)
    return F.max_pool2d(x, **kwargs)


def _ours(kind, x, w, b, kwargs, event_driven, backend):
    if kind == "conv2d":
        return ops.synapse_conv2d(x, w, b, event_driven=event_driven, backend=backend, **kwargs)
    if kind == "linear":
        return ops.synapse_linear(x, w, b, event_driven=event_driven, backend=backend)
    return ops.max_pool(x, 2, backend=backend, **kwargs)


def run_case(rng: random.Random, backend: str, trace: bool = False) -> str:
    kind, shapes, kwargs = rng.choice([_conv_case, _conv_case, _linear_case, _pool_case])(rng)
    binary = rng.random() < 0.8
    density = rng.choice([0.0, 0.01, 0.05, 0.2, 0.6, 1.0])
    event_driven = rng.choice([True, False, "auto"])
    train = rng.random() < 0.6
    if trace:
        print(f"{kind} {shapes} {kwargs} ed={event_driven} binary={binary} density={density} train={train} "
              f"backend={backend}", flush=True)
    x = _input(rng, shapes["x"], binary, density)
    w = torch.randn(shapes["w"]) if "w" in shapes else None
    b = torch.randn(shapes["b"]) if ("b" in shapes and rng.random() < 0.7) else None
    if w is not None and w.numel() and rng.random() < 0.05:  # a non-finite weight
        w.view(-1)[rng.randrange(w.numel())] = rng.choice([float("nan"), float("inf")])
    leaves = [t for t in (x, w, b) if t is not None]
    try:
        _torch_result(kind, x, w, b, kwargs)
        torch_error = None
    except Exception as e:  # whether torch refuses is what is compared
        torch_error = e
    xs = [t.clone().requires_grad_(train) for t in leaves]
    xr = [t.clone().requires_grad_(train) for t in leaves]
    pad = {"x": xs[0], "w": xs[1] if w is not None else None, "b": xs[-1] if b is not None else None}
    padr = {"x": xr[0], "w": xr[1] if w is not None else None, "b": xr[-1] if b is not None else None}
    where = f"{kind} {shapes} {kwargs} ed={event_driven} binary={binary} density={density} backend={backend}"
    try:
        out = _ours(kind, pad["x"], pad["w"], pad["b"], kwargs, event_driven, backend)
    except (ValueError, TypeError) as e:
        if torch_error is not None:
            return "same refusal as torch"
        if any(s in str(e) for s in REFUSED_BY_DESIGN) and event_driven is True:
            return "refused by design"
        if "no Triton kernel for max pooling" in str(e) and backend == "triton":
            return "refused by design"  # on CUDA, 'auto' runs torch's pooling; 'triton' names a kernel that is not
        return f"FINDING refused what torch accepts ({type(e).__name__}: {e}) | {where}"
    except Exception as e:  # torch's own refusal passed on, or a finding
        if torch_error is not None and type(e) is type(torch_error):
            return "same refusal as torch"
        return f"FINDING {type(e).__name__}: {e} | {where}"
    if torch_error is not None:
        return f"FINDING accepted what torch refuses ({type(torch_error).__name__}: {torch_error}) | {where}"
    if kind == "max_pool2d" and x.numel():
        if bool(torch.isneginf(F.max_pool2d(x, **kwargs)).any()):
            # a window wholly in the padding (inputs are finite): torch returns -inf with an index that belongs to
            # another window or lies past the plane, and its own backward then adds there or writes out of bounds
            # (heap corruption), so only the forward is compared
            ok = _rel(F.max_pool2d(x, **kwargs), out) == 0.0
            if ok and train:
                ok = bool(torch.isfinite(torch.autograd.grad(out, xs[0], torch.ones_like(out))[0]).all())
            return "all-padding window: output equal, gradient finite" if ok else f"FINDING all-padding | {where}"
    ref = _torch_result(kind, padr["x"], padr["w"], padr["b"], kwargs)
    if _rel(ref, out) > 1e-5:
        return f"FINDING output differs ({_rel(ref, out):.3g}) | {where}"
    if train and out.numel():
        g = torch.randn_like(ref)
        got = torch.autograd.grad(out, xs, g, allow_unused=True)
        want = torch.autograd.grad(ref, xr, g, allow_unused=True)
        for name, a, c in zip("xwb", want, got):
            if (a is None) != (c is None) or (a is not None and _rel(a, c) > 1e-4):
                err = "missing" if (a is None) != (c is None) else f"{_rel(a, c):.3g}"
                return f"FINDING grad_{name} differs ({err}) | {where}"
    return "equal to torch"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backends", default="cpp,torch")
    p.add_argument("--trace", action="store_true", help="print each case before it runs (to find a crash)")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")  # torch's notes on padding='same' with even kernels
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    counts: dict = {}
    findings = []
    for i in range(args.n):
        backend = rng.choice(args.backends.split(","))
        try:
            outcome = run_case(rng, backend, args.trace)
        except Exception:  # a bug of this script or of the reference call
            outcome = "FINDING harness error " + traceback.format_exc(limit=3)
        key = outcome.split(" |")[0].split(":")[0] if outcome.startswith("FINDING") else outcome
        counts[key] = counts.get(key, 0) + 1
        if outcome.startswith("FINDING"):
            findings.append(f"case {i}: {outcome}")
    print(json.dumps({"seed": args.seed, "cases": args.n, "backends": args.backends, "outcomes": counts}, indent=1))
    for f in findings[:40]:
        print(f)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
