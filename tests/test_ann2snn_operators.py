"""``fastspike.ann2snn.operators`` (temporal-difference operators) against SpikingJelly 2.0.0's
``activation_based.ann2snn.operators``: the same state_dict keys, outputs, input and parameter gradients and
running sums (memories ``x_cum``, ``y_cum``) in multi-step and single-step mode, over consecutive calls that
continue the stored sums; the TD identity (outputs summed over time = the ANN function of the summed inputs);
errors for bad inputs."""
import pytest
import torch

from fastspike import functional
from fastspike.ann2snn import operators as ops

from helpers import DEVICE, assert_close

pytestmark = pytest.mark.peers

TOL = 1e-5
T, N = 4, 2


@pytest.fixture(scope="module")
def sj_ops():
    return pytest.importorskip("spikingjelly.activation_based.ann2snn.operators")


def _rand(*shape):
    return torch.randn(*shape, device=DEVICE)


# name, args, kwargs, one-step input shapes
CASES = [
    ("TDSoftmax", (), {}, [(N, 3, 5)]),
    ("TDSoftmax", (1,), {}, [(N, 3, 5)]),
    ("TDLayerNorm", (5,), {}, [(N, 3, 5)]),
    ("TDLayerNorm", ((3, 5),), {"eps": 1e-3, "bias": False}, [(N, 3, 5)]),
    ("TDLayerNorm", (5,), {"elementwise_affine": False}, [(N, 5)]),
    ("TDRMSNorm", (5,), {}, [(N, 3, 5)]),
    ("TDRMSNorm", (5,), {"eps": 1e-2, "elementwise_affine": False}, [(N, 5)]),
    ("TDGELU", (), {}, [(N, 6)]),
    ("TDGELU", ("tanh",), {}, [(N, 3, 2)]),
    ("TDSiLU", (), {}, [(N, 6)]),
    ("TDLinear", (6, 4), {}, [(N, 6)]),
    ("TDLinear", (6, 4), {"bias": False}, [(N, 3, 6)]),
    ("TDConv2d", (2, 4, 3), {"padding": 1}, [(N, 2, 5, 4)]),
    ("TDConv2d", (4, 4, (3, 2)), {"stride": 2, "groups": 2, "bias": False}, [(N, 4, 7, 6)]),
    ("TDConv2d", (2, 3, 3), {"padding": "same", "padding_mode": "reflect", "dilation": 2}, [(N, 2, 6, 6)]),
    ("TDConv2d", (2, 3, 2), {"padding": "valid", "padding_mode": "circular"}, [(N, 2, 4, 4)]),
    ("TDConv2d", (2, 3, 3), {"padding": (1, 2), "padding_mode": "replicate"}, [(N, 2, 4, 4)]),
    ("SNNMatrixOperator", (), {}, [(N, 3, 4), (N, 4, 2)]),
    ("SNNMatrixOperator", (), {}, [(3, 4), (N, 4, 2)]),
    ("SNNElementWiseProduct", (), {}, [(N, 3), (N, 3)]),
    ("SNNElementWiseProduct", (), {}, [(3,), (N, 3)]),
    ("TDScaledDotProductAttention", (), {}, [(N, 5, 4), (N, 6, 4), (N, 6, 3)]),
    ("TDScaledDotProductAttention", (True, 0.3), {}, [(N, 2, 5, 4), (N, 2, 5, 4), (N, 2, 5, 4)]),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


def _pair(sj_ops, name, args, kwargs, step_mode):
    ref = getattr(sj_ops, name)(*args, **kwargs, step_mode=step_mode).to(DEVICE)
    ours = getattr(ops, name)(*args, **kwargs, step_mode=step_mode).to(DEVICE)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g).to(p) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _same_state(a, b):
    for name in ("x_cum", "y_cum"):
        sa, sb = getattr(a, name), getattr(b, name)
        sa, sb = (sa if isinstance(sa, tuple) else (sa,)), (sb if isinstance(sb, tuple) else (sb,))
        assert len(sa) == len(sb)
        for u, v in zip(sa, sb):
            assert_close(f"memory {name}", u, v, TOL)


def _run_and_compare(ref, ours, inputs, name, **kwargs):
    x_ref = [x.clone().requires_grad_() for x in inputs]
    x_ours = [x.clone().requires_grad_() for x in inputs]
    y_ref, y = ref(*x_ref, **kwargs), ours(*x_ours, **kwargs)
    if isinstance(y_ref, tuple):
        assert y_ref[1] is None and y[1] is None
        y_ref, y = y_ref[0], y[0]
    assert_close(f"{name} output", y_ref, y, TOL)
    grad = torch.randn_like(y)
    (y_ref * grad).sum().backward()
    (y * grad).sum().backward()
    for i, (a, b) in enumerate(zip(x_ref, x_ours)):
        assert_close(f"{name} input {i} gradient", a.grad, b.grad, TOL)
    for (k, p_ref), (_, p) in zip(ref.named_parameters(), ours.named_parameters()):
        assert_close(f"{name} {k} gradient", p_ref.grad, p.grad, TOL)
    _same_state(ref, ours)
    for net in (ref, ours):  # cut the graph before the next call (tuple states included)
        for m in net.modules():
            for name in ("x_cum", "y_cum"):
                s = getattr(m, name, None)
                if isinstance(s, tuple):
                    setattr(m, name, tuple(v.detach() for v in s))
                elif isinstance(s, torch.Tensor):
                    setattr(m, name, s.detach())
    return y


@pytest.mark.parametrize("name,args,kwargs,shapes", CASES, ids=IDS)
def test_multi_step_matches_spikingjelly(sj_ops, name, args, kwargs, shapes):
    ref, ours = _pair(sj_ops, name, args, kwargs, "m")
    first = [_rand(T, *s) for s in shapes]
    y = _run_and_compare(ref, ours, first, name)
    assert y.shape[0] == T
    # the TD identity: the outputs summed over time are the ANN function of the inputs summed over time
    sums = [x.sum(0) for x in first]
    if name in ("SNNMatrixOperator", "SNNElementWiseProduct") and sums[0].dim() < sums[1].dim():
        sums[0] = sums[0].unsqueeze(0)
    with torch.no_grad():
        want = ours.ann_forward(*sums)
        if name == "TDSoftmax" and args and args[0] > 0:  # in 'm' mode a non-negative dim indexes [T, ...]
            want = torch.softmax(sums[0], dim=args[0] - 1)
        assert_close(f"{name} TD identity", want, y.detach().sum(0), 1e-4)
    # a second call continues the stored running sums
    _run_and_compare(ref, ours, [_rand(T - 1, *s) for s in shapes], name)
    # a reset starts afresh
    functional.reset_net(ours)
    ref.reset()
    _run_and_compare(ref, ours, [_rand(2, *s) for s in shapes], name)


@pytest.mark.parametrize("name,args,kwargs,shapes", CASES, ids=IDS)
def test_single_step_matches_spikingjelly(sj_ops, name, args, kwargs, shapes):
    ref, ours = _pair(sj_ops, name, args, kwargs, "s")
    if name == "SNNMatrixOperator" and len(shapes[0]) < len(shapes[1]):
        shapes = [(1, *shapes[0]), shapes[1]]
    if name == "SNNElementWiseProduct" and len(shapes[0]) < len(shapes[1]):
        shapes = [shapes[1], shapes[1]]
    total = None
    xs = []
    for _ in range(3):
        x = [_rand(*s) for s in shapes]
        xs.append(x)
        y = _run_and_compare(ref, ours, x, name)
        total = y.detach() if total is None else total + y.detach()
    sums = [sum(x[i] for x in xs) for i in range(len(shapes))]
    with torch.no_grad():
        assert_close(f"{name} TD identity", ours.ann_forward(*sums), total, 1e-4)


@pytest.mark.parametrize("mask", ["none", "bool", "float", "causal"])
@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_multihead_attention_matches_spikingjelly(sj_ops, mask, step_mode):
    ref, ours = _pair(sj_ops, "TDMultiheadAttention", (8, 2), {}, step_mode)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    L = 5
    kwargs = {}
    if mask == "bool":
        kwargs["attn_mask"] = torch.rand(L, L, device=DEVICE) < 0.3
        kwargs["attn_mask"].fill_diagonal_(False)
    elif mask == "float":
        kwargs["attn_mask"] = torch.randn(N * 2, L, L, device=DEVICE)
    elif mask == "causal":
        kwargs["is_causal"] = True
    for steps in (T, 2):
        shape = (steps, N, L, 8) if step_mode == "m" else (N, L, 8)
        q, kv = _rand(*shape), _rand(*shape)
        _run_and_compare(ref, ours, [q, kv, kv.clone()], "TDMultiheadAttention", **kwargs)
    ours.step_mode = "m" if step_mode == "s" else "s"
    assert all(p.step_mode == ours.step_mode for p in (ours.q_proj, ours.k_proj, ours.v_proj, ours.out_proj))
    x = _rand(N, L, 8)
    out, weights = ours.ann_forward(x, x, x, **kwargs)
    out_ref, _ = ref.ann_forward(x, x, x, **kwargs)
    assert weights is None
    assert_close("TDMultiheadAttention ann_forward", out_ref, out, TOL)
    functional.reset_net(ours)
    assert ours.x_cum is None and ours.q_proj.x_cum is None


def test_signatures_and_reprs_match(sj_ops):
    for name in ops.__all__:
        assert getattr(ops, name).__module__.startswith("fastspike.ann2snn.operators")
    pairs = [("TDConv2d", (2, 4, 3), {"padding": "same", "padding_mode": "reflect", "groups": 2, "bias": False}),
             ("TDLayerNorm", (5,), {"bias": False}), ("TDRMSNorm", ((2, 3),), {}), ("TDGELU", ("tanh",), {}),
             ("TDSoftmax", (1,), {}), ("TDLinear", (3, 2), {}), ("TDScaledDotProductAttention", (True, 0.5), {}),
             ("TDMultiheadAttention", (4, 2), {})]
    for name, args, kwargs in pairs:
        assert repr(getattr(ops, name)(*args, **kwargs)) == repr(getattr(sj_ops, name)(*args, **kwargs)), name


@pytest.mark.parametrize("make,inputs,match", [
    (lambda: ops.TDSoftmax(0), [(T, N, 3)], "time dimension"),
    (lambda: ops.TDSoftmax(), [(T,)], "at least 2 dimensions"),
    (lambda: ops.TDLayerNorm(4), [(T, N, 5)], "normalized_shape"),
    (lambda: ops.TDRMSNorm(4), [(T, N, 5)], "normalized_shape"),
    (lambda: ops.TDConv2d(2, 2, 3), [(T, 2, 5, 5)], r"\[T, N, C, H, W\]"),
    (lambda: ops.SNNMatrixOperator(), [(T, 3), (T, 3, 2)], "a_seq"),
    (lambda: ops.SNNElementWiseProduct(), [(T, 3), (T - 1, 3)], "same time length"),
    (lambda: ops.TDScaledDotProductAttention(), [(T, 2, 4), (T, 2, 4), (T, 2)], "value_seq"),
    (lambda: ops.TDMultiheadAttention(4, 2), [(T, N, 4)] * 3, r"\[T, batch, seq, embed_dim\]"),
    (lambda: ops.TDLinear(3, 2), [(0, N, 3)], "non-empty time"),
])
def test_bad_inputs(sj_ops, make, inputs, match):
    with pytest.raises(ValueError, match=match):
        make()(*[torch.zeros(s) for s in inputs])


@pytest.mark.parametrize("make", [
    lambda m: m.TDGELU("erf"), lambda m: m.TDConv2d(3, 4, 3, groups=2), lambda m: m.TDConv2d(2, 4, 3, padding="full"),
    lambda m: m.TDConv2d(2, 4, 3, stride=2, padding="same"), lambda m: m.TDConv2d(2, 4, 3, padding_mode="mirror"),
    lambda m: m.TDMultiheadAttention(5, 2), lambda m: m.TDMultiheadAttention(4, 2, dropout=0.1),
    lambda m: m.TDMultiheadAttention(4, 2, batch_first=False),
])
def test_bad_arguments_rejected_like_spikingjelly(sj_ops, make):
    with pytest.raises(ValueError):
        make(sj_ops)
    with pytest.raises(ValueError):
        make(ops)


def test_attention_mask_with_causal_is_refused(sj_ops):
    q = torch.randn(T, 2, 3, 4)
    for m in (ops.TDScaledDotProductAttention(is_causal=True), ops.TDMultiheadAttention(4, 2)):
        kwargs = {} if isinstance(m, ops.TDScaledDotProductAttention) else {"is_causal": True}
        with pytest.raises(ValueError, match="one masking mode"):
            m(q, q, q, attn_mask=torch.zeros(3, 3, dtype=torch.bool), **kwargs)
    with pytest.raises(ValueError, match="need_weights"):
        ops.TDMultiheadAttention(4, 2)(q, q, q, need_weights=True)
