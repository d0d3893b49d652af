"""The neuron compiler's kernels as torch.library custom ops (fastspike/compiler/kernel_op.py) under torch.compile.

For three compiled neurons -- QIF written as a step function (its state given as a number: a null state pointer
in the kernels), a two-state adaptive neuron, and a neuron with learnable parameters (a scalar and a per-channel
one) -- on the C++ backend and on Triton (the interpreter here):

* ``torch._dynamo.explain`` finds 0 graph breaks and one graph, for the CompiledNeuron and for FlexSN over it,
  and a FlexSN with learnable static inputs compiled by Inductor gives eager's outputs and gradients;
* ``torch.compile(fullgraph=True)`` (Inductor with the C++ ops; AOTAutograd for the Triton ops under the
  interpreter, which Inductor cannot compile) gives the eager outputs, final states, state sequences and the
  gradients of the input, the states and the parameters;
* ``torch.library.opcheck`` passes on the registered forward and backward ops, and their fake implementations
  give the shapes and dtypes of the real ones in every configuration;
* compiling the same neuron twice registers one op, a different neuron another, and calls after the first do no
  hashing and no code generation; a deep copy or a pickled copy of a FlexSN uses the same op;
* the generated Triton kernels compile for sm_80 and sm_90 in a pairwise covering set of their specialisations
  (fastspike/kernels/_spec.py), the state values arriving as fp32 (eager) or fp64 (torch.compile's launchers).
"""
import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch._dynamo as dynamo
from torch._subclasses.fake_tensor import FakeTensorMode

from fastspike import neuron, surrogate
from fastspike.compiler import compile_neuron, cpp, ir, kernel_op, triton_gen
from helpers import DEVICE, KERNEL_BACKENDS, assert_close, noncontiguous, triton_runs_here

T, B, C = 3, 2, 150  # N = 300: two C++ blocks and two Triton programs


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FASTSPIKE_CACHE", str(tmp_path_factory.getbasetemp() / "kernel_cache"))


# ------------------------------------------------------------------------------------------ neurons
def qif(x, v):
    h = v + (x + 1.2 * v * (v - 0.7)) / 2.0
    s = surrogate.Sigmoid(alpha=4.0)(h - 1.0)
    return s, s * -0.1 + (1.0 - s) * h


def adaptive(x, v, a):
    h = v + (x - v) * 0.5
    s = surrogate.ATan()(h - 1.0 - a)
    return s, h * (1.0 - s), a * 0.9 + 0.2 * s


def learnable(x, v, w, beta):
    h = v + (x - v) * torch.sigmoid(w)
    s = surrogate.SuperSpike(alpha=3.0)(h - 1.0)
    return s, h.clamp(-2.0, 2.0) * beta, h - s


def _case(name):
    """(compiled neuron, x, states, params): fresh leaves that require grad (a state given as a number has none)."""
    x = (torch.randn(T, B, C) + 0.8).requires_grad_()
    if name == "qif":
        return compile_neuron(qif, num_states=1), x, (-0.1,), ()
    if name == "two-state":
        states = ((0.3 * torch.randn(B, C)).requires_grad_(), (0.1 * torch.rand(B, C)).requires_grad_())
        return compile_neuron(adaptive, num_states=2), x, states, ()
    params = (torch.tensor(0.2, requires_grad=True), (0.5 + torch.rand(C)).requires_grad_())
    return compile_neuron(learnable, num_states=1, num_params=2), x, ((0.2 * torch.randn(B, C)).requires_grad_(),), \
        params


NEURONS = ["qif", "two-state", "learnable"]


def _runner(compiled, backend, store):
    def run(x, states, params):
        outputs, finals, seqs = compiled(x, states, params, store_state_seqs=store, backend=backend)
        return (*outputs, *finals, *(seqs or ()))
    return run


def _outputs_and_grads(fn, x, states, params):
    outs = fn(x, states, params)
    leaves = [t for t in (x, *states, *params) if isinstance(t, torch.Tensor)]
    weights = [noncontiguous(torch.randn_like(o)) for o in outs]
    grads = torch.autograd.grad(outs, leaves, weights)
    return outs, grads


# ------------------------------------------------------------------------------------------ torch.compile
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", NEURONS)
def test_no_graph_breaks(name, backend):
    compiled, x, states, params = _case(name)
    ex = dynamo.explain(_runner(compiled, backend, True))(x, states, params)
    assert ex.graph_break_count == 0 and ex.graph_count == 1, [str(b.reason) for b in ex.break_reasons]
    ops = [str(n.target) for g in ex.graphs for n in g.graph.nodes if n.op == "call_function"]
    assert any(f"fastspike.compiled_{compiled.key}_{backend}" in t for t in ops), ops


def test_flexsn_has_no_graph_break():
    """FlexSN over a compiled core with learnable static inputs (its 'auto' kernels: C++ here, Triton on CUDA)."""
    w = torch.nn.Parameter(torch.tensor([0.3], device=DEVICE))
    beta = torch.nn.Parameter(0.5 + torch.rand(B, C, device=DEVICE))
    flex = neuron.FlexSN(learnable, num_states=1, static_inputs=(w, beta), store_state_seqs=True)
    ex = dynamo.explain(flex)(torch.randn(T, B, C, device=DEVICE))
    assert ex.graph_break_count == 0 and ex.graph_count == 1, [str(b.reason) for b in ex.break_reasons]
    ops = [str(n.target) for g in ex.graphs for n in g.graph.nodes if n.op == "call_function"]
    assert any(f"fastspike.compiled_{flex.compiled.key}_" in t for t in ops), ops


def test_flexsn_inductor_matches_eager():
    """FlexSN with learnable static inputs under torch.compile (Inductor; 'auto' kernels), two calls carrying the
    state: outputs and the gradients of the input and both parameters equal eager's."""
    w = torch.nn.Parameter(torch.tensor([0.3], device=DEVICE))
    beta = torch.nn.Parameter(0.5 + torch.rand(B, C, device=DEVICE))
    flex = neuron.FlexSN(learnable, num_states=1, static_inputs=(w, beta))
    x = torch.randn(T, B, C, device=DEVICE) + 0.8

    def run(module):
        flex.reset()
        flex.zero_grad(set_to_none=True)
        xr = x.clone().requires_grad_()
        outs = [o for _ in range(2) for o in module(xr)]
        sum(o.sum() * (i + 1) for i, o in enumerate(outs)).backward()
        return outs, [w.grad.clone(), beta.grad.clone(), xr.grad.clone()]

    torch._dynamo.reset()
    want, want_g = run(flex)
    got, got_g = run(torch.compile(flex, fullgraph=True))
    for i, (a, b) in enumerate(zip(want + want_g, got + got_g)):
        assert b.abs().sum() > 0, f"value {i} is zero"
        assert_close(f"value {i}", a, b, 1e-6)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", NEURONS)
def test_compiled_matches_eager(name, backend):
    """Outputs, final states, state sequences and every gradient equal eager's (the same kernels run)."""
    torch._dynamo.reset()
    compiled, x, states, params = _case(name)
    eager = _runner(compiled, backend, True)
    # Inductor cannot compile the Triton interpreter's kernels: AOTAutograd traces the custom ops there
    graph = torch.compile(eager, fullgraph=True, backend="inductor" if backend == "cpp" else "aot_eager")
    torch.manual_seed(1)
    want, want_g = _outputs_and_grads(eager, x, states, params)
    torch.manual_seed(1)
    got, got_g = _outputs_and_grads(graph, x, states, params)
    assert torch.equal(want[0], got[0]) and 0 < got[0].sum() < got[0].numel()
    for i, (a, b) in enumerate(zip(want, got)):
        assert_close(f"{name} output {i}", a, b, 1e-6)
    for i, (a, b) in enumerate(zip(want_g, got_g)):
        assert b.abs().sum() > 0, f"gradient {i} is zero"
        assert_close(f"{name} grad {i}", a, b, 1e-6)


# ------------------------------------------------------------------------------------------ the registered ops
def _op_args(compiled, x, states, params, store_seq, need_grad):
    ss = [None if isinstance(s, float) else s.detach().requires_grad_(need_grad) for s in states]
    vs = [s if isinstance(s, float) else 0.0 for s in states]
    ps = [(p.reshape(1) if p.numel() == 1 else p.expand(B, C)).detach().contiguous().requires_grad_(need_grad)
          for p in params]
    return (x.detach().requires_grad_(need_grad), *ss, *ps, *vs, store_seq, need_grad)


def _backward_args(compiled, backend, fwd_args, outputs, none_grads: bool):
    NO, NS = compiled.num_outputs, compiled.num_states
    seqs = outputs[NO + NS:] if backend == "triton" else (None,) * NS
    gys = [torch.randn_like(o) for o in outputs[:NO]]
    gts = [None if none_grads else torch.randn_like(o) for o in outputs[NO:NO + NS]]
    gqs = [None if none_grads or q.numel() == 0 else torch.randn_like(q) for q in outputs[NO + NS:]]
    plain = [a.detach() if isinstance(a, torch.Tensor) else a for a in fwd_args[:-2]]
    return (*plain, *seqs, *gys, *gts, *gqs, True)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", NEURONS)
def test_opcheck(name, backend):
    compiled, x, states, params = _case(name)
    op = compiled.op(backend)
    for store_seq in (False, True):
        args = _op_args(compiled, x, states, params, store_seq, True)
        torch.library.opcheck(op.custom_forward, args)
        outputs = op.forward_kernel(*args)
        bwd = _backward_args(compiled, backend, args, outputs, none_grads=not store_seq)
        torch.library.opcheck(op.custom_backward, bwd)


def _meta(values):
    return [(tuple(v.shape), v.dtype) for v in values]


def _fake(mode, args):
    return [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", NEURONS)
def test_fake_shapes_equal_real(name, backend):
    """The fake implementations give the real kernels' shapes and dtypes (None where the kernel gives None)."""
    compiled, x, states, params = _case(name)
    op = compiled.op(backend)
    for store_seq in (False, True):
        for need_grad in (False, True):
            args = _op_args(compiled, x, states, params, store_seq, need_grad)
            with torch.no_grad():
                real = op.custom_forward(*args)
            with FakeTensorMode() as mode:
                fake = op.custom_forward(*_fake(mode, args))
            assert _meta(real) == _meta(fake), (store_seq, need_grad)
            if not need_grad:
                continue
            bwd = _backward_args(compiled, backend, args, real, none_grads=store_seq)
            real_g = op.custom_backward(*bwd)
            with FakeTensorMode() as mode:
                fake_g = op.custom_backward(*_fake(mode, bwd))
            assert _meta(real_g) == _meta(fake_g), store_seq
            assert not any(torch.isnan(g).any() for g in real_g), "an output left unwritten"


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_number_state_is_a_null_pointer(backend):
    """A state given as a number reaches the op as None and its value, and equals that state as a tensor."""
    compiled = compile_neuron(adaptive, num_states=2)
    x = (torch.randn(T, B, C) + 0.8).requires_grad_()
    v0 = torch.full((B, C), 0.25, requires_grad=True)
    by_number = compiled(x, (0.25, 0.1), store_state_seqs=True, backend=backend)
    by_tensor = compiled(x, (v0, torch.full((B, C), 0.1)), store_state_seqs=True, backend=backend)
    for a, b in zip([*by_tensor[0], *by_tensor[1], *by_tensor[2]], [*by_number[0], *by_number[1], *by_number[2]]):
        assert torch.equal(a, b)
    g = torch.randn_like(x)
    assert torch.equal(torch.autograd.grad(by_tensor[0][0], x, g)[0], torch.autograd.grad(by_number[0][0], x, g)[0])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_number_state_makes_no_tensor(backend, monkeypatch):
    compiled = compile_neuron(qif, num_states=1)
    x = torch.randn(T, B, C).requires_grad_()
    compiled(x, -0.1, backend=backend)
    made = []
    for name in ("full", "full_like", "zeros", "zeros_like", "ones"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _real=real, _name=name, **k: made.append(_name) or _real(*a, **k))
    (s,), (v,), _ = compiled(x, -0.1, backend=backend)
    with torch.no_grad():
        compiled(x, -0.1, backend=backend)
    assert made == []
    assert torch.autograd.grad(s, x, torch.ones_like(s))[0].abs().sum() > 0  # v gets no gradient: None, not zeros


# ------------------------------------------------------------------------------------------ registration
def test_same_neuron_registers_one_op():
    first = compile_neuron(qif, num_states=1)
    count = len(kernel_op._REGISTERED)
    again = compile_neuron(qif, num_states=1)
    assert again.key == first.key and len(kernel_op._REGISTERED) == count
    for backend in first._ops:
        assert again.op(backend) is first.op(backend)
    assert hasattr(torch.ops.fastspike, f"compiled_{first.key}_cpp")
    assert hasattr(torch.ops.fastspike, f"compiled_{first.key}_cpp_backward")
    other = compile_neuron(lambda x, v: qif(x * 0.5, v), num_states=1)
    assert other.key != first.key and other.op("cpp") is not first.op("cpp")
    assert len(kernel_op._REGISTERED) == count + len(other._ops)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_no_hashing_per_call(backend, monkeypatch):
    compiled, x, states, params = _case("learnable")
    compiled(x, states, params, backend=backend)[0][0].sum().backward()  # builds the kernels
    calls = []
    real_sha = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a, **k: calls.append("sha256") or real_sha(*a, **k))
    for module, fn in ((ir.Graph, "key"), (cpp, "generate"), (triton_gen, "generate"), (cpp, "load"),
                       (triton_gen, "load")):
        real = getattr(module, fn)
        monkeypatch.setattr(module, fn, lambda *a, _real=real, _fn=fn, **k: calls.append(_fn) or _real(*a, **k))
    for _ in range(3):
        compiled(x, states, params, backend=backend)[0][0].sum().backward()
        with torch.no_grad():
            compiled(x, states, params, backend=backend)
    assert calls == []


def test_deepcopy_and_pickle_share_the_op():
    """copy.deepcopy of a model shares its CompiledNeuron; pickling traces the step function again, which finds the
    registered op (the ctypes library is never copied or pickled)."""
    import copy
    import pickle
    flex = neuron.FlexSN(qif, num_states=1)
    x = torch.randn(T, B, C) + 0.8
    want = flex(x)
    for clone in (copy.deepcopy(flex), pickle.loads(pickle.dumps(flex))):
        clone.reset()
        assert torch.equal(clone(x), want)
        assert clone.compiled.op("cpp") is flex.compiled.op("cpp")


# ------------------------------------------------------------------------------------------ Triton for a real GPU
_GPU_COMPILE = textwrap.dedent("""
    from fastspike.compiler import compile_neuron, triton_gen
    from fastspike.kernels import _spec
    import test_neuron_compiler_compile as t
    count = 0
    for fn, ns, npar in ((t.qif, 1, 0), (t.adaptive, 2, 0), (t.learnable, 1, 2)):
        module = triton_gen.load(compile_neuron(fn, ns, npar).source("triton", tuple(k == 0 for k in range(npar))))
        svs = tuple(f"sv{j}" for j in range(ns))
        has = {f"HAS_S0{j}": (False, True) for j in range(ns)}
        writes = {f"WRITE_GS{j}": (False, True) for j in range(ns)}
        specs = (_spec.KernelSpec(kernel=module.fs_forward, ints=("T", "N"), floats=svs, dtypes=("fp32",),
                                  constexprs={"BLOCK": (256,), "STORE_SEQ": (False, True), **has}),
                 _spec.KernelSpec(kernel=module.fs_backward, ints=("T", "N", "last_off"), floats=svs,
                                  dtypes=("fp32",), constexprs={"BLOCK": (256,), "HAS_SEQ": (False, True), **has,
                                                                **writes}))
        for spec in specs:
            for variant in _spec.variants(spec):
                for arch in (80, 90):
                    _spec.compile_variant(spec, variant, arch)
                    count += 1
    print(count)
""")


@pytest.mark.skipif(not triton_runs_here(), reason="needs triton")
def test_generated_triton_compiles_for_gpu(tmp_path):
    """triton.compile for GPUTarget('cuda', 80 / 90) needs no GPU; in a child process without the interpreter."""
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path / "triton"),
               FASTSPIKE_CACHE=str(tmp_path / "kernels"),
               PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-c", _GPU_COMPILE], env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]
    assert int(p.stdout.split()[-1]) >= 100
