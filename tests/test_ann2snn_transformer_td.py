"""``TransformerTDEquivalentRecipe`` against SpikingJelly 2.0.0's: small Transformer blocks converted by both
libraries from the same weights give the same module tree, state_dict and outputs in multi-step and single-step
mode (with a static attention mask that stays [N, 1, 1, L]); the TD identity holds (the outputs summed over time
equal the ANN on the inputs summed over time); bad arguments and unsupported graphs raise SpikingJelly's
exception types with messages naming the argument."""
import copy

import pytest
import spikingjelly.activation_based.ann2snn as sj_ann2snn
import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional as sj_functional

from fastspike import ann2snn, functional

pytestmark = pytest.mark.peers

T, N, L, D, H = 4, 2, 5, 8, 2


class Block(nn.Module):
    """Hand-written attention (matmul, softmax module, mask), SDPA, nn.MultiheadAttention, an MLP and
    functional activations."""

    def __init__(self):
        super().__init__()
        self.ln1, self.qkv, self.proj = nn.LayerNorm(D), nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.mha = nn.MultiheadAttention(D, H, batch_first=True)
        self.ln2, self.fc1, self.act, self.fc2 = nn.LayerNorm(D), nn.Linear(D, 16), nn.GELU(), nn.Linear(16, D)
        self.sm, self.drop, self.head = nn.Softmax(dim=-1), nn.Dropout(0.1), nn.Linear(D, 3)

    def forward(self, x, mask):
        B, S, E = x.shape
        z = self.qkv(self.ln1(x))
        q, k, v = (z[..., i * D:(i + 1) * D].view(B, S, H, E // H).transpose(1, 2) for i in range(3))
        att = self.sm(q @ k.transpose(-2, -1) / 2.0 + mask)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(B, S, E))
        x = x + F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(B, S, E)
        a, _ = self.mha(x, x, x, need_weights=False)
        x = x + a
        x = x + self.fc2(self.drop(self.act(self.fc1(self.ln2(x)))))
        x = x + torch.tanh(F.silu(x))
        return self.head(x.mean(dim=1))


class Mixer(nn.Module):
    """Conv2d, nn.Flatten, RMSNorm, SiLU/Tanh modules, tanh-GELU, positive-dim softmax functions, x.matmul."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.flat = nn.Flatten(2)
        self.norm, self.silu, self.tanh = nn.RMSNorm(9), nn.SiLU(), nn.Tanh()
        self.fc = nn.Linear(9, 9, bias=False)

    def forward(self, x):
        y = self.norm(self.flat(self.conv(x)))  # [N, 4, 9]
        y = F.gelu(self.fc(self.silu(y)), approximate="tanh")
        s = torch.softmax(y, 2) + y.softmax(dim=1)
        return self.tanh(s.matmul(y.transpose(1, 2)))


def _sequence(*shape):
    seq = 0.2 * torch.randn(T, *shape)
    seq[0] = torch.randn(*shape)
    return seq


def _convert_both(ann, recipe_args=(), recipe_kwargs=None):
    recipe_kwargs = recipe_kwargs or {}
    sj = sj_ann2snn.Converter(recipe=sj_ann2snn.TransformerTDEquivalentRecipe(*recipe_args, **recipe_kwargs))
    fs = ann2snn.Converter(recipe=ann2snn.TransformerTDEquivalentRecipe(*recipe_args, **recipe_kwargs))
    return sj.convert(copy.deepcopy(ann)), fs.convert(copy.deepcopy(ann))


def _same_structure(sj_snn, fs_snn):
    def tree(snn):  # SpikingJelly's _StepModeTensorOp is fastspike's public StepModeTensorOp
        return [(n, type(m).__name__.lstrip("_")) for n, m in snn.named_modules()][1:]

    assert tree(sj_snn) == tree(fs_snn)
    sj_sd, fs_sd = sj_snn.state_dict(), fs_snn.state_dict()
    assert list(sj_sd) == list(fs_sd)
    for key in sj_sd:
        assert torch.equal(sj_sd[key], fs_sd[key]), key


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_attention_block_matches_spikingjelly(step_mode):
    torch.manual_seed(0)
    ann = Block().eval()
    x_seq = _sequence(N, L, D)
    mask = torch.zeros(N, 1, 1, L)
    mask[1, ..., -2:] = -1e4
    sj_snn, fs_snn = _convert_both(ann, (T,))
    _same_structure(sj_snn, fs_snn)
    assert fs_snn.time_steps == T and fs_snn.ann2snn_recipe == "transformer_td_equivalent"
    outs = []
    for snn, fn in ((sj_snn, sj_functional), (fs_snn, functional)):
        fn.set_step_mode(snn, step_mode)
        fn.reset_net(snn)
        with torch.no_grad():
            if step_mode == "m":
                out = torch.cat([snn(x_seq[:2], mask), snn(x_seq[2:], mask)])  # state carries over
            else:
                out = torch.stack([snn(x, mask) for x in x_seq])
        outs.append(out)
    assert outs[1].shape == (T, N, 3)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(outs[1].sum(0), ann(x_seq.sum(0), mask), rtol=1e-4, atol=1e-5)


def test_conv_norm_and_functional_ops_match_spikingjelly():
    torch.manual_seed(1)
    ann = Mixer().eval()
    x_seq = _sequence(N, 2, 3, 3)
    sj_snn, fs_snn = _convert_both(ann)
    _same_structure(sj_snn, fs_snn)
    assert not hasattr(fs_snn, "time_steps")
    names = dict(fs_snn.named_children())
    assert {"td_gelu_0", "td_softmax_0", "td_softmax_1", "td_matmul_0"} <= set(names)
    assert [names[f"td_softmax_{i}"].dim for i in range(2)] == [3, 2]  # ANN dims 2 and 1 behind the time axis
    outs = []
    for snn, fn in ((sj_snn, sj_functional), (fs_snn, functional)):
        fn.set_step_mode(snn, "m")
        with torch.no_grad():
            outs.append(snn(x_seq))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(outs[1].sum(0), ann(x_seq.sum(0)), rtol=1e-4, atol=1e-5)


def test_string_recipe_builds_the_recipe():
    conv = ann2snn.FXConverter("transformer_td_equivalent")
    assert isinstance(conv.recipe, ann2snn.TransformerTDEquivalentRecipe) and conv.recipe.time_steps is None


class _Attn(nn.Module):
    def __init__(self, call):
        super().__init__()
        self.mha = nn.MultiheadAttention(D, H, batch_first=True)
        self.call = call

    def forward(self, x):
        return self.call(self, x)


BAD_GRAPHS = [
    (lambda s, x: s.mha(x, x, x)[0], "need_weights"),
    (lambda s, x: F.scaled_dot_product_attention(x, x, x, dropout_p=0.1), "dropout_p"),
    (lambda s, x: F.scaled_dot_product_attention(x, x, x, scale=x.shape[-1] ** -0.5), "scale"),
    (lambda s, x: F.gelu(x, approximate="bad"), "approximate"),
    (lambda s, x: x.chunk(2, dim=-1)[0], "chunk"),
    (lambda s, x: x.permute(1, 0, 2), "permute"),
    (lambda s, x: x[0], "integer tensor getitem"),
    (lambda s, x: x[1:], "batch dimension"),
    (lambda s, x: torch.sort(x)[0], "sort"),
]


@pytest.mark.parametrize("call, match", BAD_GRAPHS)
def test_unsupported_graphs_raise_like_spikingjelly(call, match):
    for lib in (sj_ann2snn, ann2snn):
        with pytest.raises(ValueError):
            lib.Converter(recipe=lib.TransformerTDEquivalentRecipe()).convert(_Attn(call))
    with pytest.raises(ValueError, match=match):
        ann2snn.Converter(recipe=ann2snn.TransformerTDEquivalentRecipe()).convert(_Attn(call))


def test_multi_step_batch_reshape_is_refused_at_run_time():
    class Flat(nn.Module):
        def forward(self, x):
            return x.reshape(3, -1)

    for lib, fn in ((sj_ann2snn, sj_functional), (ann2snn, functional)):
        snn = lib.Converter(recipe=lib.TransformerTDEquivalentRecipe()).convert(Flat())
        fn.set_step_mode(snn, "m")
        with pytest.raises(ValueError):
            snn(torch.randn(T, N, 6))
    with pytest.raises(ValueError, match="keep the original batch dimension"):
        snn(torch.randn(T, N, 6))


@pytest.mark.parametrize("time_steps", [0, -2, 1.5, True, "4"])
def test_bad_time_steps(time_steps):
    for lib in (sj_ann2snn, ann2snn):
        with pytest.raises(ValueError):
            lib.Converter(recipe=lib.TransformerTDEquivalentRecipe(time_steps)).convert(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="time_steps must be a positive integer"):
        ann2snn.Converter(recipe=ann2snn.TransformerTDEquivalentRecipe(time_steps)).convert(nn.Linear(2, 2))


def test_mha_module_restrictions():
    for kwargs, match in (({"dropout": 0.1}, "dropout"), ({"batch_first": False}, "batch_first"),
                          ({"kdim": 4, "vdim": 4}, "kdim")):
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.mha = nn.MultiheadAttention(D, H, **{"batch_first": True, **kwargs})

            def forward(self, x, y):
                return self.mha(x, y, y, need_weights=False)[0]

        for lib in (sj_ann2snn, ann2snn):
            with pytest.raises(ValueError):
                lib.Converter(recipe=lib.TransformerTDEquivalentRecipe()).convert(M())
        with pytest.raises(ValueError, match=match):
            ann2snn.Converter(recipe=ann2snn.TransformerTDEquivalentRecipe()).convert(M())


OPS = [
    ("mean", {"dim": -1, "keepdim": True}, ()),
    ("mean", {"dim": (1, 2), "keepdim": False}, ()),
    ("flatten", {"start_dim": 1, "end_dim": -1}, ()),
    ("transpose", {"dim0": 1, "dim1": 2}, ()),
    ("unsqueeze", {"dim": -1}, ()),
    ("unflatten", {"dim": 2, "unflattened_size": (2, 2)}, ()),
    ("permute", {"dims": (0, 2, 1)}, ()),
    ("cat", {"dim": -1}, "twice"),
    ("shape", {}, ()),
    ("dim", {}, ()),
    ("size", {}, ()),
    ("size", {}, (-1,)),
    ("reshape", {}, (N, 12)),
    ("reshape", {}, ((-1, 4, 3),)),
    ("expand", {}, (N, 3, 4)),
    ("getitem", {"item": (slice(None), slice(1, 3))}, ()),
    ("getitem", {"item": (Ellipsis, 0)}, ()),
]


@pytest.mark.parametrize("op_name, op_kwargs, extra", OPS)
def test_step_mode_tensor_ops_match_spikingjelly(op_name, op_kwargs, extra):
    from spikingjelly.activation_based.ann2snn.recipes.step_mode_adapters import _StepModeTensorOp

    from fastspike.ann2snn.recipes.sequence_adapter import StepModeTensorOp

    x_seq = torch.randn(T, N, 3, 4)
    for step_mode, x in (("m", x_seq), ("s", x_seq[0])):
        inputs = (x, x) if extra == "twice" else (x, *extra)
        ours = StepModeTensorOp(op_name, op_kwargs, step_mode)(*inputs)
        theirs = _StepModeTensorOp(op_name, op_kwargs, step_mode)(*inputs)
        if isinstance(theirs, torch.Tensor):
            assert torch.equal(ours, theirs)
        else:
            assert ours == theirs


@pytest.mark.parametrize("op_name, op_kwargs, inputs", [
    ("mean", {"dim": 0, "keepdim": False}, ()),
    ("transpose", {"dim0": 0, "dim1": 1}, ()),
    ("cat", {"dim": 0}, "twice"),
    ("reshape", {}, (3, -1)),
    ("expand", {}, (3, 3, 4, 1)),
    ("flatten", {"start_dim": 2, "end_dim": 1}, ()),
])
def test_step_mode_tensor_ops_refuse_the_batch_dimension(op_name, op_kwargs, inputs):
    from fastspike.ann2snn.recipes.sequence_adapter import StepModeTensorOp

    x_seq = torch.randn(T, N, 3, 4)
    with pytest.raises(ValueError, match=op_name):
        StepModeTensorOp(op_name, op_kwargs, "m")(*((x_seq, x_seq) if inputs == "twice" else (x_seq, *inputs)))
    with pytest.raises(ValueError, match="step_mode must be one of"):
        StepModeTensorOp("dim", {}, "x")(x_seq)


def test_adapt_sequence_graph_needs_a_graph_module():
    from fastspike.ann2snn.recipes.sequence_adapter import adapt_sequence_graph

    with pytest.raises(TypeError, match="fx_model must be a torch.fx.GraphModule"):
        adapt_sequence_graph(nn.Linear(2, 2), context="test")
