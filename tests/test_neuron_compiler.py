"""The neuron compiler (fastspike.compiler): step functions traced, differentiated and generated as fused kernels.

* IF / LIF / ParametricLIF / QIF / EIF written as step functions, compiled (cpp, and Triton under the
  interpreter with N = 300 > BLOCK = 256, so a second program runs), against the hand-written
  ``ops.multistep_neuron``: spikes exactly, V and the gradients of x, v0 and w by relative RMS error;
* a two-state neuron (adaptive threshold: v and w) with a scalar and a per-channel learnable parameter, against
  autograd through the PyTorch step loop, including the state sequences and their gradients;
* unsupported constructs raise NeuronTraceError naming the file and line;
* the disk cache: a second build loads the library without running the compiler, files are written atomically,
  processes compiling the same neuron at once agree, a missing compiler says what is missing;
* FlexSN with a traceable core runs the generated kernels and matches its PyTorch loop.
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from fastspike import neuron, surrogate
from fastspike.compiler import KernelBuildError, NeuronTraceError, compile_neuron, cpp
from fastspike.compiler import cache as kcache
from fastspike.ops import multistep_neuron
from fastspike.ops._contract import Op
from helpers import KERNEL_BACKENDS, assert_close, noncontiguous

T, B, C = 7, 2, 150  # N = 300: two blocks of the C++ kernel, two Triton programs


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """A cache directory of this test session (tests that need an empty one set their own)."""
    monkeypatch.setenv("FASTSPIKE_CACHE", str(tmp_path_factory.getbasetemp() / "kernel_cache"))


# ------------------------------------------------------------------------------------------ neurons
def make_step(mode, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, sg=None, detach_reset=False,
              a0=1.0, v_c=0.8, delta_T=1.0, theta_rh=0.8, v_rest=0.0):
    """The neuron of ``multistep_neuron(mode=...)`` as a step function (the reference's order of operations)."""
    sg = sg or surrogate.Sigmoid(alpha=4.0)
    vr = 0.0 if v_reset is None else v_reset

    def charge(x, v, k):
        if mode == "if":
            return v + x
        if mode == "lif":
            return v + (x - (v - vr)) / tau if decay_input else v - (v - vr) / tau + x
        if mode == "plif":
            return v + (x - (v - vr)) * k if decay_input else v - (v - vr) * k + x
        if mode == "qif":
            return v + (x + a0 * (v - v_rest) * (v - v_c)) / tau
        return v + (x + v_rest - v + delta_T * torch.exp((v - theta_rh) / delta_T)) / tau

    def fire_reset(h):
        s = sg(h - v_threshold)
        sr = s.detach() if detach_reset else s
        v = h - sr * v_threshold if v_reset is None else sr * v_reset + (1.0 - sr) * h
        return s, v

    if mode == "plif":
        def plif(x, v, w):
            return fire_reset(charge(x, v, torch.sigmoid(w)))
        return plif

    def step(x, v):
        return fire_reset(charge(x, v, None))
    return step


CASES = {
    "if-hard": dict(mode="if"),
    "lif-hard": dict(mode="lif", tau=2.0),
    "lif-soft-nodecay-detach-atan": dict(mode="lif", tau=3.0, decay_input=False, v_reset=None, detach_reset=True,
                                         sg=surrogate.ATan(alpha=2.0)),
    "plif-hard": dict(mode="plif"),
    "plif-soft-nodecay": dict(mode="plif", decay_input=False, v_reset=None, sg=surrogate.PiecewiseQuadratic()),
    "qif-reset-neg": dict(mode="qif", v_reset=-0.1, v_c=0.7, a0=1.2),
    "eif-erf": dict(mode="eif", v_reset=-0.1, theta_rh=0.7, delta_T=0.9, sg=surrogate.Erf(alpha=2.0)),
}


def _hand_written(x, v0, w, cfg):
    kw = {k: v for k, v in cfg.items() if k not in ("sg",)}
    return multistep_neuron(x, v0, w=w, surrogate_function=cfg.get("sg"), backend="cpp", **kw)[:2]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_hand_written(case, backend):
    cfg = CASES[case]
    mode = cfg["mode"]
    compiled = compile_neuron(make_step(**cfg), num_states=1, num_params=int(mode == "plif"))
    x = (torch.randn(T, B, C) + (0.8 if mode != "if" else 0.3)).requires_grad_()
    v0 = (0.2 * torch.randn(B, C)).requires_grad_()
    w = torch.tensor([0.4], requires_grad=True) if mode == "plif" else None
    params = (w,) if w is not None else ()
    gs, gv = noncontiguous(torch.randn(T, B, C)), torch.randn(B, C)

    (s, ), (v, ), _ = compiled(x, v0, params, backend=backend)
    s_ref, v_ref = _hand_written(x, v0, w, cfg)
    assert torch.equal(s, s_ref), f"{case}: spikes differ at {(s != s_ref).sum().item()} elements"
    assert 0 < s.sum() < s.numel(), "the inputs must make some neurons fire and some not"
    assert_close("v_last", v_ref, v, 1e-5)
    leaves = (x, v0) + params
    got = torch.autograd.grad((s, v), leaves, (gs, gv))
    want = torch.autograd.grad((s_ref, v_ref), leaves, (gs, gv))
    for name, a, b in zip(("grad_x", "grad_v0", "grad_w"), want, got):
        assert b.abs().sum() > 0, f"{name} is zero"
        assert_close(f"{case} {name}", a, b, 2e-5)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_constant_v0_and_single_step(backend):
    """v0 given as a number (no gradient), T = 1, and the torch backend giving the same numbers."""
    compiled = compile_neuron(make_step("qif", v_reset=-0.1), num_states=1)
    x = (torch.randn(1, 5, 3) + 1.0).requires_grad_()
    (s, ), (v, ), _ = compiled(x, -0.1, backend=backend)
    (s_t, ), (v_t, ), _ = compiled(x, -0.1, backend="torch")
    assert torch.equal(s, s_t)
    assert_close("v", v_t, v, 1e-6)
    assert_close("grad_x", torch.autograd.grad(v_t.sum(), x)[0], torch.autograd.grad(v.sum(), x)[0], 1e-6)


# ------------------------------------------------------------------------------------------ two states
SG = surrogate.SuperSpike(alpha=3.0)


def adaptive_lif(x, v, a, decay, beta):
    """v: membrane, a: threshold adaptation; decay (scalar) and beta (per channel) are learnable."""
    k = torch.sigmoid(decay)
    h = v + (x - v) * k
    s = SG(h - 1.0 - a)
    a_new = a * 0.9 + beta * s
    v_new = torch.where(s > 0.5, torch.zeros_like(h), h)  # hard reset to 0, written with where
    return s, h.clamp(-2.0, 2.0), v_new, a_new


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_two_states_against_autograd(backend):
    compiled = compile_neuron(adaptive_lif, num_states=2, num_params=2)
    assert compiled.num_inputs == 1 and compiled.num_outputs == 2 and compiled.num_states == 2
    x = (torch.randn(T, B, C) + 0.8).requires_grad_()
    v0 = (0.3 * torch.randn(B, C)).requires_grad_()
    a0 = (0.1 * torch.rand(B, C)).requires_grad_()
    decay = torch.tensor(0.2, requires_grad=True)
    beta = (0.2 + 0.1 * torch.rand(C)).requires_grad_()
    leaves = (x, v0, a0, decay, beta)
    got = compiled(x, (v0, a0), (decay, beta), store_state_seqs=True, backend=backend)
    ref = compiled.reference(x, (v0, a0), (decay, beta), store_state_seqs=True)
    flat_got = [*got[0], *got[1], *got[2]]
    flat_ref = [*ref[0], *ref[1], *ref[2]]
    assert torch.equal(flat_got[0], flat_ref[0])
    for i, (a, b) in enumerate(zip(flat_ref, flat_got)):
        assert_close(f"value {i}", a, b, 1e-5)
    with torch.no_grad():  # no state sequence saved for a backward
        no_grad = compiled(x, (v0, a0), (decay, beta), backend=backend)
    assert all(torch.equal(a, b) for a, b in zip([*no_grad[0], *no_grad[1]], flat_got[:4]))
    grads_out = [noncontiguous(torch.randn_like(t)) for t in flat_ref]
    grads_out[3] = None  # no gradient reaches the final a: the kernel must treat it as zero
    pairs = [(t, g) for t, g in zip(flat_got, grads_out) if g is not None]
    got_g = torch.autograd.grad([t for t, _ in pairs], leaves, [g for _, g in pairs])
    pairs = [(t, g) for t, g in zip(flat_ref, grads_out) if g is not None]
    ref_g = torch.autograd.grad([t for t, _ in pairs], leaves, [g for _, g in pairs])
    for name, a, b in zip(("x", "v0", "a0", "decay", "beta"), ref_g, got_g):
        assert a.shape == b.shape
        assert b.abs().sum() > 0, f"grad {name} is zero"
        assert_close(f"grad {name}", a, b, 2e-5)


def test_float64_and_bad_arguments():
    compiled = compile_neuron(adaptive_lif, num_states=2, num_params=2)
    x = torch.randn(3, 4, dtype=torch.float64)
    p = (torch.tensor(0.1, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    out = compiled(x, (0.0, 0.0), p)  # float64 runs the step loop in PyTorch
    assert out[0][0].dtype == torch.float64
    with pytest.raises(ValueError, match="takes 2 states"):
        compiled(x, (0.0,), p)
    with pytest.raises(ValueError, match="broadcastable to"):
        compiled(x, (0.0, 0.0), (p[0], torch.ones(5, dtype=torch.float64)))
    with pytest.raises(ValueError, match="functional.reset_net"):
        compiled(x, (torch.zeros(3, dtype=torch.float64), 0.0), p)
    with pytest.raises(ValueError, match="backend must be one of"):
        compiled(x.float(), (0.0, 0.0), p, backend="cuda")


# ------------------------------------------------------------------------------------------ errors
def _line_of(fn, text):
    lines, first = __import__("inspect").getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


def _if_on_tensor(x, v):
    h = v + x
    if h > 1.0:  # python control flow
        h = h * 0.0
    return h, h


def _in_place(x, v):
    h = v.add_(x)  # in-place
    return h, h


def _unknown_fn(x, v):
    h = torch.sin(v) + x  # unsupported function
    return h, h


_CAPTURED = torch.ones(3)


def _captured(x, v):
    h = v + x * _CAPTURED  # captured tensor
    return h, h


_SJ_SG = None


def _spikingjelly_surrogate(x, v):
    h = v + x
    s = _SJ_SG(h - 1.0)  # spikingjelly surrogate
    return s, h


class _HandWrittenSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h):
        return (h >= 0).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


_PREBOUND = _HandWrittenSpike.apply  # bound before tracing: the patched Function.apply never sees the call


def _prebound_function(x, v):
    h = v + x
    s = _PREBOUND(h - 1.0)  # pre-bound apply
    return s, h


def _to_int(x, v):
    h = (v + x).to(torch.int32)  # integer cast
    return h, h


class _CustomSG(surrogate.Sigmoid):
    @staticmethod
    def grad(x, alpha):
        return x * 0 + alpha


def _custom_surrogate(x, v):
    h = v + x
    s = _CustomSG()(h - 1.0)  # custom surrogate
    return s, h


@pytest.mark.parametrize("fn, marker, message", [
    (_if_on_tensor, "# python control flow", "Python control flow"),
    (_in_place, "# in-place", "in-place method .add_()"),
    (_unknown_fn, "# unsupported function", "torch function sin is not supported"),
    (_captured, "# captured tensor", "captured tensor"),
    (_spikingjelly_surrogate, "# spikingjelly surrogate", "cannot be traced"),
    (_custom_surrogate, "# custom surrogate", "no fused kernel"),
    (_prebound_function, "# pre-bound apply", "_HandWrittenSpike"),
    (_to_int, "# integer cast", ".to(torch.int32) is not supported"),
], ids=["if", "in-place", "torch.sin", "captured", "sj-surrogate", "custom-surrogate", "prebound-function",
                              "to-int"])
def test_unsupported_constructs_name_the_line(fn, marker, message, monkeypatch):
    from spikingjelly.activation_based import surrogate as sj_surrogate
    monkeypatch.setattr(sys.modules[__name__], "_SJ_SG", sj_surrogate.Sigmoid())
    with pytest.raises(NeuronTraceError) as info:
        compile_neuron(fn, num_states=1)
    text = str(info.value)
    assert message in text
    assert f"{__file__}, line {_line_of(fn, marker)}" in text, text


def test_bad_compile_arguments():
    with pytest.raises(ValueError, match="no step input"):
        compile_neuron(lambda v: (v, v), num_states=1)
    with pytest.raises(ValueError, match="num_states must be a non-negative integer"):
        compile_neuron(lambda x, v: (x, v), num_states=-1)
    with pytest.raises(ValueError, match="fewer than num_states"):
        compile_neuron(lambda x, v, w: v, num_states=2)


def test_generated_code_comes_from_the_ir_only():
    """Names of the user's variables and functions never reach the generated sources."""
    def my_secret_neuron(x, membrane_potential_xyz):
        charged_value_xyz = membrane_potential_xyz * 0.5 + x
        return charged_value_xyz, charged_value_xyz
    compiled = compile_neuron(my_secret_neuron, num_states=1)
    for backend in ("cpp", "triton"):
        src = compiled.source(backend, ())
        assert "xyz" not in src and "my_secret" not in src


# ------------------------------------------------------------------------------------------ cache
def _unique_step(offset):
    def step(x, v):
        h = v * 0.5 + x + offset
        s = surrogate.Sigmoid()(h - 1.0)
        return s, h * (1.0 - s)
    return step


def test_cache_reused_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSPIKE_CACHE", str(tmp_path))
    replaced = []
    real_replace = os.replace

    def spy_replace(src, dst):
        assert not os.path.exists(dst), "a cached file was overwritten"
        assert os.path.dirname(src) == os.path.dirname(dst) and os.path.getsize(src) > 0
        replaced.append(os.path.basename(dst))
        real_replace(src, dst)

    monkeypatch.setattr(kcache.os, "replace", spy_replace)
    x = torch.randn(3, 10)
    runs = len(kcache.COMPILER_RUNS)
    out1 = compile_neuron(_unique_step(0.123), num_states=1)(x, 0.0, backend="cpp")
    assert len(kcache.COMPILER_RUNS) == runs + 1
    files = sorted(p.name for p in (tmp_path / "neurons").iterdir())
    assert len(files) == 1 and files[0].endswith(".so") and replaced == files, files  # no temporary file left

    cpp._LOADED.clear()  # a new process: only the disk cache remains

    def no_compiler(*a, **k):
        raise AssertionError("the compiler ran although the kernel is cached")
    monkeypatch.setattr(kcache.subprocess, "run", no_compiler)
    out2 = compile_neuron(_unique_step(0.123), num_states=1)(x, 0.0, backend="cpp")
    assert len(kcache.COMPILER_RUNS) == runs + 1
    assert torch.equal(out1[0][0], out2[0][0])


def test_concurrent_processes_share_one_file(tmp_path):
    script = textwrap.dedent("""
        import torch
        from fastspike import surrogate
        from fastspike.compiler import compile_neuron
        def step(x, v):
            h = v * 0.25 + x + 0.456
            s = surrogate.Sigmoid()(h - 1.0)
            return s, h * (1.0 - s)
        out = compile_neuron(step, num_states=1)(torch.ones(2, 3), 0.0, backend="cpp")
        print(float(out[1][0].sum()))
    """)
    env = dict(os.environ, FASTSPIKE_CACHE=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in results]
    assert results[0][0] == results[1][0]
    names = [p.name for p in (tmp_path / "neurons").iterdir()]
    assert len(names) == 1 and names[0].endswith(".so"), names


def test_missing_compiler_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSPIKE_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    compiled = compile_neuron(_unique_step(0.789), num_states=1)
    x = torch.randn(2, 4)
    with pytest.raises(KernelBuildError, match="needs a C\\+\\+ compiler.*no-such-compiler-xyz"):
        compiled(x, 0.0, backend="cpp")
    assert compiled(x, 0.0, backend="torch")[0][0].shape == (2, 4)  # the PyTorch path needs no compiler


# ------------------------------------------------------------------------------------------ FlexSN
def _flex_core(x, v, w):
    h = v + (x - v) * torch.sigmoid(w)
    s = surrogate.ATan()(h - 1.0)
    return s, h - s * 1.0


def test_flexsn_uses_compiled_kernels(monkeypatch):
    calls = []
    real = Op.__call__
    monkeypatch.setattr(Op, "__call__", lambda op, *a: (calls.append(op.name) if op.name.startswith("compiled_")
                                                        else None) or real(op, *a))
    w = torch.nn.Parameter(0.3 + 0.1 * torch.rand(B, C))  # one value per neuron (FlexSN: scalar or per step)
    fused = neuron.FlexSN(_flex_core, num_states=1, static_inputs=(w,), store_state_seqs=True)
    assert fused.compiled is not None
    plain = neuron.FlexSN(_flex_core, num_states=1, static_inputs=(w,), store_state_seqs=True)
    plain.backend = "torch"
    x = (torch.randn(T, B, C) + 0.8).requires_grad_()
    s1 = fused(x)
    assert calls, "FlexSN did not run the generated kernels"
    n = len(calls)
    s2 = plain(x)
    assert len(calls) == n
    assert torch.equal(s1, s2)
    assert_close("v", plain.states[0], fused.states[0], 1e-5)
    assert_close("state_seqs", plain.state_seqs[0], fused.state_seqs[0], 1e-5)
    g = torch.randn_like(s1)
    g1 = torch.autograd.grad((s1, fused.states[0]), (x, w), (g, torch.ones(B, C)))
    g2 = torch.autograd.grad((s2, plain.states[0]), (x, w), (g, torch.ones(B, C)))
    for name, a, b in zip(("x", "w"), g2, g1):
        assert_close(f"grad {name}", a, b, 2e-5)


def test_flexsn_untraceable_core_keeps_pytorch_path():
    def core(x, v):
        h = v + x
        return (h, h * 0.5) if bool((h > 10).any()) else (h, h)
    flex = neuron.FlexSN(core, num_states=1)
    assert flex.compiled is None
    out = flex(torch.ones(3, 2))
    assert torch.equal(out, torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))


# ------------------------------------------------------------------------------------------ library step functions
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_izhikevich_step_of_the_library_compiles(backend):
    """fastspike's own Izhikevich step function (neuron/dynamics.py), compiled, against IzhikevichNode."""
    from fastspike.neuron.dynamics import izhikevich_step
    sg = surrogate.Sigmoid(alpha=4.0)
    cfg = dict(tau=2.0, a0=1.0, v_rest=-0.1, v_c=0.8, tau_w=3.0, a=0.3, b=0.05, v_threshold=1.0, v_reset=-0.1)
    node = neuron.IzhikevichNode(surrogate_function=sg, step_mode="m", **cfg)

    def step(x, v, w):
        return izhikevich_step(x, v, w, cfg["tau"], cfg["a0"], cfg["v_rest"], cfg["v_c"], cfg["tau_w"], cfg["a"],
                               cfg["b"], cfg["v_threshold"], cfg["v_reset"], sg)
    compiled = compile_neuron(step, num_states=2)
    x = (torch.randn(T, B, C) + 0.8).requires_grad_()
    s_ref = node(x)
    (s,), (v, w), _ = compiled(x, (cfg["v_reset"], 0.0), backend=backend)
    assert torch.equal(s, s_ref) and 0 < s.sum() < s.numel()
    assert_close("v", node.v, v, 1e-5)
    assert_close("w", node.w, w, 1e-5)
    g = torch.randn_like(s)
    assert_close("grad_x", torch.autograd.grad((s_ref, node.v, node.w), x, (g, g[0], g[1]))[0],
                 torch.autograd.grad((s, v, w), x, (g, g[0], g[1]))[0], 2e-5)


def _every_op(x, v, p):
    """Every supported operation once (log / sqrt / general powers on positive values)."""
    pos = torch.abs(v) + 0.5
    a = torch.exp(-v * v) + torch.log(pos) + torch.sqrt(pos) + pos ** 1.5 + pos ** -2 + 1.0 / pos
    b = torch.tanh(x) * torch.sigmoid(v) - torch.relu(x - 0.2) + F.relu(-x) * 0.3 + abs(x) * p
    c = torch.minimum(x, v) + torch.maximum(x, v * 0.5) + x.clamp(-0.5, 0.7) + torch.clamp(v, min=-0.3)
    d = torch.where((x > 0.1) & (v < 0.4) | (x < -1.0), x * v, x - v) + torch.heaviside(x.detach(), torch.zeros_like(x))
    e = (~(x >= 0.0)) * 0.25 + (x != v) * 0.1 + 2.0 ** x * 0.01 + x.clamp_max(0.5) - (-x).neg()
    h = v * 0.5 + x * 0.2 + 0.05 * (a + b + c + d + e)
    s = surrogate.S2NN()(h - 1.0)
    return s, h, h * (1.0 - s.detach())


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_every_operation_against_autograd(backend):
    compiled = compile_neuron(_every_op, num_states=1, num_params=1)
    x = torch.randn(T, B, C).requires_grad_()
    v0 = torch.randn(B, C).requires_grad_()
    p = torch.randn(C).requires_grad_()
    got = compiled(x, v0, (p,), backend=backend)
    ref = compiled.reference(x, v0, (p,))
    outs_got, outs_ref = [*got[0], *got[1]], [*ref[0], *ref[1]]
    for i, (a, b) in enumerate(zip(outs_ref, outs_got)):
        assert_close(f"output {i}", a, b, 1e-5)
    gs = [torch.randn_like(t) for t in outs_ref]
    for name, a, b in zip(("x", "v0", "p"), torch.autograd.grad(outs_ref, (x, v0, p), gs),
                          torch.autograd.grad(outs_got, (x, v0, p), gs)):
        assert_close(f"grad {name}", a, b, 1e-4)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_ilif_step_of_the_library_compiles(backend):
    """Multi-level spikes (round of a clamp, straight-through window) from neuron/dynamics.py against ILIFNode."""
    from fastspike.neuron.dynamics import ilif_step
    node = neuron.ILIFNode(step_mode="m")
    fn = node.surrogate_function
    args = (node.tau, node.v_threshold, float(fn.max_spike_count), fn.grad_min, fn.grad_max)
    compiled = compile_neuron(lambda x, v: ilif_step(x, v, *args), num_states=1)
    x = (2.0 * torch.randn(T, B, C) + 1.0).requires_grad_()
    s_ref = node(x)
    (s,), (v,), _ = compiled(x, 0.0, backend=backend)
    assert torch.equal(s, s_ref) and len(torch.unique(s)) > 2
    assert_close("v", node.v, v, 1e-6)
    g = torch.randn_like(s)
    assert_close("grad_x", torch.autograd.grad(s_ref, x, g)[0], torch.autograd.grad(s, x, g)[0], 1e-6)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_rounding_functions(backend):
    def step(x, v):
        return torch.round(x), x.floor(), torch.ceil(x), torch.sign(x), x.trunc(), v
    compiled = compile_neuron(step, num_states=1)
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999997, 2.7, -2.2, 3.0, 0.0, -0.0, 8388609.0, -1e9, 1e-30])
    x = x.reshape(2, 7)
    got = compiled(x, 0.0, backend=backend)[0]
    for name, fn, out in zip(("round", "floor", "ceil", "sign", "trunc"),
                             (torch.round, torch.floor, torch.ceil, torch.sign, torch.trunc), got):
        assert torch.equal(out, fn(x)), (name, out, fn(x))


def _library_cases():
    """fastspike.neuron.dynamics' step functions as compile_neuron step functions:
    (step, num_states, parameter shapes, input offset)."""
    from fastspike.neuron import dynamics as d
    sg = surrogate.Sigmoid(alpha=4.0)
    return {
        "ternary_lif": (lambda x, v: d.ternary_lif_step(x, v, 2.0, True, 1.0, 0.0, sg), 1, (), 0.0),
        "activation_aware_if": (lambda x, v, off: d.activation_aware_if_step(x, v, 1.0, off, 0.0, sg), 1,
                                ((C,),), 0.5),
        "raf": (lambda x, u, v: d.raf_step(x, u, v, -0.2, 0.5, 1.0, 1.0, 0.0, sg), 2, (), 0.5),
        "klif": (lambda x, v, k: d.klif_step(x, v, k, 2.0, True, True, 1.0, 0.0, sg), 1, ((),), 0.8),
        "cuba_lif": (lambda x, i, v: d.cuba_lif_step(x, i, v, 0.5, 0.7, 1.0, 0.0, sg), 2, (), 0.3),
        "clif": (lambda x, v, m: d.clif_step(x, v, m, 2.0, 1.0, sg), 2, (), 0.8),
        "liaf": (lambda x, v: d.liaf_step(x, v, 2.0, True, 1.0, 0.0, torch.nn.ReLU(), True, sg), 1, (), 0.8),
        "gated_lif": (lambda x, v, s, a, b, g: (lambda sv: (sv[0], sv[1], sv[0]))(
            d.gated_lif_step(x, v, s, a, b, g, 0.5, 1.0, 0.1, 0.2, 0.5, sg)), 2, ((C,), (C,), ()), 0.8),
        "stbif": (lambda x, q, acc, qt, pmax, nmin: (lambda r: (r[0], r[3], r[1], r[2]))(
            d.stbif_step(x, q, acc, qt, pmax, nmin)), 2, ((), (), ()), 0.3),
    }


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", list(_library_cases()))
def test_library_step_functions_compile(name, backend):
    """Every step function of fastspike.neuron.dynamics that a fused neuron of issue 19 uses compiles, and the
    generated kernels match autograd through the same function in a PyTorch loop."""
    step, num_states, shapes, offset = _library_cases()[name]
    compiled = compile_neuron(step, num_states=num_states, num_params=len(shapes))
    x = (torch.randn(T, B, C) + offset).requires_grad_()
    states = [(0.3 * torch.randn(B, C)).requires_grad_() for _ in range(num_states)]
    if name == "stbif":
        states[1] = torch.zeros(B, C)  # the spike count
        params = [torch.tensor(0.5, requires_grad=True), torch.tensor(3.0), torch.tensor(-3.0)]
    else:
        params = [(0.5 + 0.2 * torch.rand(shape)).requires_grad_() for shape in shapes]
    got = compiled(x, states, params, backend=backend)
    ref = compiled.reference(x, states, params)
    outs_got, outs_ref = [*got[0], *got[1]], [*ref[0], *ref[1]]
    for i, (a, b) in enumerate(zip(outs_ref, outs_got)):
        assert_close(f"{name} output {i}", a, b, 1e-5)
    leaves = [t for t in (x, *states, *params) if t.requires_grad]
    keep = [i for i, t in enumerate(outs_ref) if t.requires_grad]  # STBIF's spikes depend on comparisons only
    outs_ref, outs_got = [outs_ref[i] for i in keep], [outs_got[i] for i in keep]
    gs = [torch.randn_like(t) for t in outs_ref]
    for i, (a, b) in enumerate(zip(torch.autograd.grad(outs_ref, leaves, gs, allow_unused=True),
                                   torch.autograd.grad(outs_got, leaves, gs, allow_unused=True))):
        a = torch.zeros_like(leaves[i]) if a is None else a
        assert_close(f"{name} grad {i}", a, b, 1e-4)
