"""``SpikeZIPTFQANNRecipe`` and its modules against SpikingJelly 2.0.0's: a small quantised ViT (patch conv,
class token, position embedding, a block with quantised attention and MLP) and a small quantised RoBERTa-style
model (embedding, self-attention with an additive mask) converted by both libraries give the same module tree,
state_dict and outputs over time in multi-step and single-step mode; each SpikeZIP layer (Linear/Conv2d with
bias release, Embedding, LayerNorm, Softmax, the matmul-delta helpers) computes SpikingJelly's numbers and state;
bad arguments raise SpikingJelly's exception types with messages naming the argument."""
import pytest
import spikingjelly.activation_based.ann2snn as sj_ann2snn
import spikingjelly.activation_based.ann2snn.recipes.spikezip_qann as sj_zip
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional as sj_functional

from fastspike import ann2snn, functional, neuron
from fastspike.ann2snn.recipes import spikezip_layers, spikezip_qann as fs_zip

from spikezip_qann_models import QRoberta, QViT, Quan

pytestmark = pytest.mark.peers

T = 6


def _convert(lib, ann, **kwargs):
    return lib.ModuleConverter(lib.SpikeZIPTFQANNRecipe(**kwargs)).convert(ann)


def _same_model(sj_snn, fs_snn):
    tree = [(n, type(m).__name__) for n, m in sj_snn.named_modules()]
    assert [(n, type(m).__name__) for n, m in fs_snn.named_modules()] == tree
    sj_sd, fs_sd = sj_snn.state_dict(), fs_snn.state_dict()
    assert list(sj_sd) == list(fs_sd)
    for key in sj_sd:
        assert torch.equal(sj_sd[key], fs_sd[key]), key
    for attr in ("ann2snn_recipe", "time_steps", "model_family"):
        assert getattr(fs_snn, attr) == getattr(sj_snn, attr)


def _run(snn, fn, step_mode, step_inputs, **kwargs):
    fn.reset_net(snn)
    fn.set_step_mode(snn, step_mode)
    with torch.no_grad():
        if step_mode == "m":
            return snn(torch.stack(step_inputs), **kwargs)
        return torch.stack([snn(x, **kwargs) for x in step_inputs])


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_quantised_vit_matches_spikingjelly(step_mode):
    torch.manual_seed(0)
    ann = QViT().eval()
    x = torch.randn(2, 1, 4, 4)
    sj_snn, fs_snn = _convert(sj_ann2snn, ann, time_steps=T, model_family="vit"), \
        _convert(ann2snn, ann, time_steps=T, model_family="vit")
    _same_model(sj_snn, fs_snn)
    assert isinstance(fs_snn.blocks[0].attn, fs_zip.SpikeZIPViTSelfAttention)
    assert isinstance(fs_snn.blocks[0].q1, neuron.STBIFNode) and isinstance(fs_snn.blocks[0].act, nn.Identity)
    inputs = [x] + [torch.zeros_like(x)] * (T - 1)
    for _ in range(2):  # a second run after reset_net gives the same numbers
        sj_out, fs_out = _run(sj_snn, sj_functional, step_mode, inputs), _run(fs_snn, functional, step_mode, inputs)
        assert fs_out.shape == (T, 2, 3) and fs_out.abs().max() > 0
        torch.testing.assert_close(fs_out, sj_out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_quantised_roberta_matches_spikingjelly(step_mode):
    torch.manual_seed(1)
    ann = QRoberta().eval()
    ids = torch.randint(0, 11, (2, 5))
    mask = torch.zeros(2, 1, 1, 5)
    mask[1, ..., -2:] = -1e4
    sj_snn, fs_snn = _convert(sj_ann2snn, ann, time_steps=T), _convert(ann2snn, ann, time_steps=T)
    _same_model(sj_snn, fs_snn)
    assert isinstance(fs_snn.attention, fs_zip.SpikeZIPRobertaSelfAttention)
    assert isinstance(fs_snn.emb, fs_zip.SpikeZIPEmbedding)
    sj_out = _run(sj_snn, sj_functional, step_mode, [ids] * T, attention_mask=mask)
    fs_out = _run(fs_snn, functional, step_mode, [ids] * T, attention_mask=mask)
    assert fs_out.shape == (T, 2, 5, 4)
    torch.testing.assert_close(fs_out, sj_out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("bias, bias_steps", [(True, None), (True, 2), (False, None)])
def test_bias_release_layers_match_spikingjelly(kind, bias, bias_steps):
    torch.manual_seed(2)
    if kind == "linear":
        source, shape, cls = nn.Linear(5, 3, bias=bias), (2, 4, 5), "SpikeZIPLinear"
    else:
        source, shape, cls = nn.Conv2d(2, 3, 3, padding=1, bias=bias), (2, 2, 4, 4), "SpikeZIPConv2d"
    x_seq = torch.randn(5, *shape)
    for step_mode in ("m", "s"):
        ours = getattr(fs_zip, cls)(source, 3, bias_steps, step_mode)
        theirs = getattr(sj_zip, cls)(source, 3, bias_steps, step_mode)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        assert ours.bias_steps == theirs.bias_steps and ours.level == 3
        with torch.no_grad():
            if step_mode == "m":
                y_ours = torch.cat([ours(x_seq[:1]), ours(x_seq[1:])])
                y_theirs = torch.cat([theirs(x_seq[:1]), theirs(x_seq[1:])])
            else:
                y_ours, y_theirs = (torch.stack([m(x) for x in x_seq]) for m in (ours, theirs))
        torch.testing.assert_close(y_ours, y_theirs, rtol=1e-6, atol=1e-6)
        assert ours.realize_time == theirs.realize_time
        if bias:  # the summed output is the ANN's once the bias is released
            torch.testing.assert_close(y_ours.sum(0), source(x_seq.sum(0)).detach(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="bias_steps must be positive"):
        getattr(fs_zip, cls)(source, 3, 0)


def test_embedding_layernorm_softmax_and_matmul_helpers_match_spikingjelly():
    torch.manual_seed(3)
    emb = nn.Embedding(7, 4)
    ids = torch.randint(0, 7, (3, 2, 5))
    for step_mode in ("m", "s"):
        ours, theirs = fs_zip.SpikeZIPEmbedding(emb), sj_zip.SpikeZIPEmbedding(emb)
        ours.step_mode = theirs.step_mode = step_mode
        with torch.no_grad():
            for _ in range(2):
                out = ours(ids) if step_mode == "m" else ours(ids[0])
                ref = theirs(ids) if step_mode == "m" else theirs(ids[0])
                assert torch.equal(out, ref) and ours.t == theirs.t
    assert "embedding.weight" in fs_zip.SpikeZIPEmbedding(emb).state_dict()
    with pytest.raises(ValueError, match="non-empty sequence"):
        fs_zip.SpikeZIPEmbedding(emb).multi_step_forward(ids[:0])
    ln = nn.LayerNorm(5)
    nn.init.normal_(ln.weight)
    x_seq = torch.randn(4, 2, 5)
    for module_ours, module_theirs in ((fs_zip.SpikeZIPLayerNorm(ln), sj_zip.SpikeZIPLayerNorm(ln)),
                                       (fs_zip.SpikeZIPSoftmax(1), sj_zip.SpikeZIPSoftmax(1))):
        assert module_ours.step_mode == "s"
        with torch.no_grad():
            torch.testing.assert_close(torch.stack([module_ours(x) for x in x_seq]),
                                       torch.stack([module_theirs(x) for x in x_seq]), rtol=1e-6, atol=1e-6)
    a, b = torch.randn(5, 2, 3, 4), torch.randn(5, 2, 3, 4)
    for transpose_b in (False, True):
        b_use = b if transpose_b else b.transpose(-1, -2)
        seq = spikezip_layers.matmul_sequence_delta(a, b_use, transpose_b)
        torch.testing.assert_close(seq, sj_zip._matmul_sequence_delta(a, b_use, transpose_b))
        steps = torch.stack([spikezip_layers.matmul_delta(a[t], b_use[t], a[:t + 1].sum(0), b_use[:t + 1].sum(0),
                                                          transpose_b) for t in range(5)])
        torch.testing.assert_close(steps, seq, rtol=1e-5, atol=1e-5)


def test_level_comes_from_the_first_quantizer_or_time_steps():
    plain = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    snn = _convert(ann2snn, plain, time_steps=9)
    assert isinstance(snn[0], fs_zip.SpikeZIPLinear) and snn[0].level == 9 and isinstance(snn[1], nn.Identity)
    quantised = nn.Sequential(nn.Linear(3, 3), Quan(level=16))
    assert _convert(ann2snn, quantised, time_steps=9)[0].level == 16
    assert _convert(ann2snn, plain, time_steps=9) is not plain and isinstance(plain[0], nn.Linear)


@pytest.mark.parametrize("kwargs, match", [({"time_steps": 0}, "time_steps"), ({"time_steps": 2.0}, "time_steps"),
                                           ({"model_family": "bert"}, "model_family")])
def test_bad_arguments(kwargs, match):
    for lib in (sj_ann2snn, ann2snn):
        with pytest.raises(ValueError):
            _convert(lib, nn.Linear(2, 2), **kwargs)
    with pytest.raises(ValueError, match=match):
        _convert(ann2snn, nn.Linear(2, 2), **kwargs)


def test_unsupported_attention_inputs_and_models():
    ann = QRoberta().eval()
    snn = _convert(ann2snn, ann, time_steps=T)
    h = torch.randn(2, 5, 8)
    for kwargs, match in (({"head_mask": h}, "head_mask"), ({"encoder_hidden_states": h}, "cross-attention"),
                          ({"past_key_value": (h, h)}, "past_key_value")):
        with pytest.raises(ValueError, match=match):
            snn.attention(h, **kwargs)
    ann.attention.position_embedding_type = "relative_key"
    for lib in (sj_ann2snn, ann2snn):
        with pytest.raises(ValueError, match="absolute"):
            _convert(lib, ann, time_steps=T)
    vit = _convert(ann2snn, QViT().eval(), time_steps=T, model_family="vit")
    with pytest.raises(ValueError, match=r"\[B, C, H, W\] or \[T, B, C, H, W\]"):
        vit(torch.randn(2, 16))
    no_norm = QViT().eval()
    del no_norm.norm
    with pytest.raises(ValueError, match="norm"):
        _convert(ann2snn, no_norm, time_steps=T, model_family="vit")
