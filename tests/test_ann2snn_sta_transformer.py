"""``STATransformerRecipe`` against SpikingJelly 2.0.0's: a small Vision Transformer (patch conv, class token and
position embedding as time constants, MultiheadAttention, LayerNorms, GELU MLP) converted by both libraries from
the same weights and calibration data gives the same module tree, state_dict (calibrated thresholds included)
and outputs in multi-step and single-step mode, for both modes and both threshold rules; the recipe's pieces
(threshold observer, spike encoder, time constant, batch unpacking) compute SpikingJelly's numbers; bad
arguments raise SpikingJelly's exception types with messages naming the argument."""
import copy

import pytest
import spikingjelly.activation_based.ann2snn as sj_ann2snn
import spikingjelly.activation_based.ann2snn.recipes.sta_transformer as sj_sta
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional as sj_functional

from fastspike import ann2snn, functional
from fastspike.ann2snn.recipes import sta_modules

pytestmark = pytest.mark.peers

D, H, L, N, T = 8, 2, 4, 3, 5


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(1, D, 2, stride=2)
        self.cls = nn.Parameter(torch.randn(1, 1, D))
        self.register_buffer("pos", 0.1 * torch.randn(1, L + 1, D))
        self.ln1, self.attn = nn.LayerNorm(D), nn.MultiheadAttention(D, H, batch_first=True)
        self.ln2, self.fc1, self.act, self.fc2 = nn.LayerNorm(D), nn.Linear(D, 16), nn.GELU(), nn.Linear(16, D)
        self.norm, self.drop, self.head = nn.LayerNorm(D), nn.Dropout(0.1), nn.Linear(D, 5)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        y = self.ln1(x)
        a, _ = self.attn(y, y, y, need_weights=False)
        x = x + a
        x = x + self.fc2(self.drop(self.act(self.fc1(self.ln2(x)))))
        return self.head(self.norm(x)[:, 0])


SETTINGS = [
    {"mode": "equivalent"},
    {"mode": "spiking_encoder"},
    {"mode": "spiking_encoder", "threshold_mode": "MAX", "momentum": 0.5, "threshold_scale": 0.5},
    {"mode": "spiking_encoder", "num_calibration_batches": 1, "eps": 1e-3},
]


def _convert(lib, ann, data=None, **kwargs):
    recipe = lib.STATransformerRecipe(dataloader=data, **{"time_steps": T, **kwargs})
    return lib.Converter(recipe=recipe).convert(copy.deepcopy(ann))


@pytest.mark.parametrize("kwargs", SETTINGS)
@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_vit_matches_spikingjelly(kwargs, step_mode):
    torch.manual_seed(0)
    ann = ViT().eval()
    data = [torch.randn(N, 1, 4, 4) for _ in range(3)]
    sj_snn, fs_snn = _convert(sj_ann2snn, ann, data, **kwargs), _convert(ann2snn, ann, data, **kwargs)
    tree = [(n, type(m).__name__.lstrip("_")) for n, m in sj_snn.named_modules()][1:]
    assert [(n, type(m).__name__) for n, m in fs_snn.named_modules()][1:] == tree
    if kwargs["mode"] == "spiking_encoder":
        encoders = {n for n, t in tree if t == "STASpikeEncoder"}  # the attention's is named after its output node
        assert encoders == {"ln1_sta_encoder", "getitem_1_sta_encoder", "ln2_sta_encoder", "act_sta_encoder",
                            "norm_sta_encoder"}
    sj_sd, fs_sd = sj_snn.state_dict(), fs_snn.state_dict()
    assert list(sj_sd) == list(fs_sd)
    for key in sj_sd:
        assert torch.equal(sj_sd[key], fs_sd[key]), key
    assert fs_snn.time_steps == T
    x_seq = torch.zeros(T, N, 1, 4, 4)
    x_seq[0] = torch.randn(N, 1, 4, 4)
    outs = []
    for snn, fn in ((sj_snn, sj_functional), (fs_snn, functional)):
        fn.set_step_mode(snn, step_mode)
        fn.reset_net(snn)
        with torch.no_grad():
            outs.append(snn(x_seq) if step_mode == "m" else torch.stack([snn(x) for x in x_seq]))
    assert outs[1].shape == (T, N, 5)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    if kwargs["mode"] == "equivalent":  # TD operators only: the sum over time is the ANN's output
        with torch.no_grad():
            torch.testing.assert_close(outs[1].sum(0), ann(x_seq[0]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["mse", "max"])
@pytest.mark.parametrize("channel_dim, dtype", [(-1, torch.float32), (1, torch.float32), (-1, torch.float16)])
def test_threshold_observer_matches_spikingjelly(mode, channel_dim, dtype):
    torch.manual_seed(2)
    ours = sta_modules.STAThresholdObserver(7, channel_dim, mode, 0.25, 1e-6)
    theirs = sj_sta._STAThresholdObserver(7, channel_dim, mode, 0.25, 1e-6)
    for _ in range(3):
        out = (torch.randn(4, 3, 6) * torch.rand(6)).to(dtype)
        ours((out, None))
        theirs((out, None))
    assert ours.num_batches_tracked == theirs.num_batches_tracked == 3
    assert torch.equal(ours.compute_threshold(), theirs.compute_threshold())


def test_threshold_observer_errors():
    obs = sta_modules.STAThresholdObserver(4, -1, "mse", 0.1, 1e-6)
    with pytest.raises(ValueError, match="no calibration activations"):
        obs.compute_threshold()
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        obs(torch.randn(5))
    with pytest.raises(ValueError, match="channel_dim=3 is out of range"):
        sta_modules.STAThresholdObserver(4, 3, "mse", 0.1, 1e-6)(torch.randn(2, 5))
    with pytest.raises(TypeError, match="must return a tensor"):
        obs([3])
    with pytest.raises(ValueError, match="'mse' or 'max'"):
        sta_modules.STAThresholdObserver(4, -1, "abs", 0.1, 1e-6)(torch.randn(2, 5))


@pytest.mark.parametrize("channel_dim", [-1, 1])
def test_spike_encoder_and_constant_match_spikingjelly(channel_dim):
    torch.manual_seed(3)
    threshold = torch.rand(4) + 0.1
    x_seq = torch.randn(6, 2, 4, 4)
    for step_mode in ("m", "s"):
        ours = sta_modules.STASpikeEncoder(threshold, channel_dim, step_mode)
        theirs = sj_sta._STASpikeEncoder(threshold, channel_dim, step_mode)
        if step_mode == "m":
            y_ours = torch.cat([ours(x_seq[:3]), ours(x_seq[3:])])
            y_theirs = torch.cat([theirs(x_seq[:3]), theirs(x_seq[3:])])
        else:
            y_ours, y_theirs = (torch.stack([m(x) for x in x_seq]) for m in (ours, theirs))
        assert torch.equal(y_ours, y_theirs) and torch.equal(ours.mem, theirs.mem)
    value = nn.Parameter(torch.randn(1, 2, 3))
    for step_mode in ("m", "s"):
        ours, theirs = sta_modules.STAConstant(value, 4, step_mode), sj_sta._STAConstant(value, 4, step_mode)
        assert isinstance(ours.value, nn.Parameter)
        for _ in range(2):
            assert torch.equal(ours(), theirs()) and ours.t == theirs.t
    buffer = sta_modules.STAConstant(torch.ones(2), 3, "m")
    assert "value" in dict(buffer.named_buffers())
    assert torch.equal(buffer(), torch.tensor([[1.0, 1.0], [0, 0], [0, 0]]))
    buffer.reset()
    assert buffer.t == 0


def test_batch_unpacking_matches_spikingjelly():
    x, y = torch.randn(2, 3), torch.randn(2)
    for batch in (x, (x, y), [x], ((x, y), {"mask": y}), ((x,), "label"), {"input": x, "mask": [y, 3]}):
        ours = ann2snn.STATransformerRecipe._batch_to_args(batch, torch.device("cpu"))
        theirs = sj_ann2snn.STATransformerRecipe._batch_to_args(batch, torch.device("cpu"))
        assert repr(ours) == repr(theirs)
    with pytest.raises(ValueError, match="must not be empty"):
        ann2snn.STATransformerRecipe._batch_to_args((), torch.device("cpu"))


BAD_ARGUMENTS = [
    ({"time_steps": 0}, "time_steps"),
    ({"time_steps": 2.0}, "time_steps"),
    ({"mode": "rate"}, "mode"),
    ({"mode": 3}, "mode"),
    ({"threshold_mode": "abs"}, "threshold_mode"),
    ({"threshold_mode": 1}, "threshold_mode"),
    ({"threshold_scale": 0}, "threshold_scale"),
    ({"threshold_scale": float("inf")}, "threshold_scale"),
    ({"spike_linear": True}, "spike_linear"),
    ({"spike_conv2d": 1}, "spike_conv2d"),
    ({"spike_classifier": None}, "spike_classifier"),
    ({"mode": "spiking_affine"}, "spiking_affine"),
    ({"momentum": 1.5}, "momentum"),
    ({"momentum": True}, "momentum"),
    ({"num_calibration_batches": 0}, "num_calibration_batches"),
    ({"show_progress": "yes"}, "show_progress"),
    ({"eps": 0.0}, "eps"),
    ({"mode": "spiking_encoder", "dataloader": None}, "dataloader"),
]


@pytest.mark.parametrize("kwargs, match", BAD_ARGUMENTS)
def test_bad_arguments_raise_like_spikingjelly(kwargs, match):
    kwargs = dict(kwargs)
    data = kwargs.pop("dataloader", [torch.randn(N, 1, 4, 4)])
    for lib in (sj_ann2snn, ann2snn):
        with pytest.raises(ValueError):
            _convert(lib, ViT().eval(), data, **kwargs)
    with pytest.raises(ValueError, match=match):
        _convert(ann2snn, ViT().eval(), data, **kwargs)


class _Attn(nn.Module):
    def __init__(self, call):
        super().__init__()
        self.attn = nn.MultiheadAttention(D, H, batch_first=True)
        self.call = call

    def forward(self, x):
        return self.call(self.attn, x)


@pytest.mark.parametrize("call, match", [
    (lambda m, x: m(x, x, x, need_weights=True)[0], "need_weights=False"),
    (lambda m, x: m(x, x, x)[1], "attention weights are used"),
    (lambda m, x: m(x, x, x, key_padding_mask=x[..., 0] > 0)[0], "key_padding_mask"),
])
def test_unsupported_attention_calls(call, match):
    for lib in (sj_ann2snn, ann2snn):
        with pytest.raises(ValueError):
            _convert(lib, _Attn(call), None)
    with pytest.raises(ValueError, match=match):
        _convert(ann2snn, _Attn(call), None)


def test_no_calibration_batch_is_an_error():
    for lib, error in ((sj_ann2snn, RuntimeError), (ann2snn, RuntimeError)):
        with pytest.raises(error, match="calibration data" if lib is sj_ann2snn else "collected no calibration"):
            _convert(lib, ViT().eval(), [], mode="spiking_encoder")


def test_show_progress_and_calibration_batch_limit(capsys):
    torch.manual_seed(4)
    ann = ViT().eval()
    data = [torch.randn(N, 1, 4, 4) for _ in range(3)]
    quiet = _convert(ann2snn, ann, data, mode="spiking_encoder", num_calibration_batches=2)
    shown = _convert(ann2snn, ann, data, mode="spiking_encoder", num_calibration_batches=2, show_progress=True)
    assert "STA calibration" in capsys.readouterr().err
    first_two = _convert(ann2snn, ann, data[:2], mode="spiking_encoder")
    all_three = _convert(ann2snn, ann, data, mode="spiking_encoder")
    key = "ln1_sta_encoder.v_threshold"
    assert torch.equal(quiet.state_dict()[key], shown.state_dict()[key])
    assert torch.equal(quiet.state_dict()[key], first_two.state_dict()[key])
    assert not torch.equal(quiet.state_dict()[key], all_three.state_dict()[key])
