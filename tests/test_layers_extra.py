"""tdBN, TEBN, BNTT, VotingLayer, Delay, SynapseFilter and Spikformer's spiking self-attention:
closed-form checks, and equality with SpikingJelly 2.0.0 from the same state_dict when it is installed."""
import pytest
import torch
import torch.nn as nn

from fastspike import functional, layer

from helpers import assert_close


@pytest.fixture(scope="module")
def sl():
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import layer as sj_layer

    return sj_layer


def _sj_reset(m):
    for mod in m.modules():
        if hasattr(mod, "reset"):
            mod.reset()


# ---------------------------------------------------------------------------------------------- BN
def test_tdbn_normalises_over_time_and_batch():
    bn = layer.ThresholdDependentBatchNorm2d(alpha=1.0, v_th=0.5, num_features=3)
    assert torch.allclose(bn.weight, torch.full((3,), 0.5))
    x = torch.randn(4, 5, 3, 6, 7) * 3 + 2
    y = bn(x)
    assert y.shape == x.shape
    mean = x.permute(2, 0, 1, 3, 4).reshape(3, -1).mean(1)
    var = x.permute(2, 0, 1, 3, 4).reshape(3, -1).var(1, unbiased=False)
    ref = (x - mean.view(1, 1, 3, 1, 1)) / torch.sqrt(var.view(1, 1, 3, 1, 1) + 1e-5) * 0.5
    assert_close("tdBN", ref, y, 1e-5)
    assert bn.step_mode == "m"
    with pytest.raises(ValueError, match="multi-step"):
        bn(torch.randn(5, 3, 6, 7))
    with pytest.raises(ValueError, match="affine"):
        layer.ThresholdDependentBatchNorm2d(1.0, 1.0, 3, affine=False)


def test_tebn_scales_each_step():
    bn = layer.TemporalEffectiveBatchNorm1d(T=3, num_features=4)
    with torch.no_grad():
        bn.scale.copy_(torch.tensor([1.0, 2.0, -1.0]))
    x = torch.randn(3, 8, 4, 5)
    y = bn(x)
    plain = nn.BatchNorm1d(4)
    ref = plain(x.flatten(0, 1)).view_as(x) * torch.tensor([1.0, 2.0, -1.0]).view(3, 1, 1, 1)
    assert_close("TEBN", ref, y, 1e-5)
    y.sum().backward()
    assert bn.scale.grad is not None and bn.scale.grad.shape == (3,)
    with pytest.raises(ValueError, match="T=3"):
        bn(torch.randn(2, 8, 4, 5))


def test_bntt_uses_one_bn_per_step_and_resets():
    bn = layer.BatchNormThroughTime2d(T=2, num_features=3, step_mode="s")
    assert all(b.bias is None for b in bn.bn_list)
    assert "bn_list.0.bias" not in bn.state_dict()
    x = torch.randn(2, 4, 3, 5, 5)
    with torch.no_grad():
        bn.bn_list[1].weight.fill_(2.0)
    y0, y1 = bn(x[0]), bn(x[1])
    with pytest.raises(RuntimeError, match="reset"):
        bn(x[0])
    functional.reset_net(bn)
    functional.set_step_mode(bn, "m")
    y = bn(x)
    assert_close("BNTT m vs s", torch.stack([y0, y1]), y, 1e-6)
    assert_close("BNTT step 1 scale", 2 * nn.functional.batch_norm(x[1], None, None, training=True), y1, 1e-5)


def test_bn_layers_match_spikingjelly(sl):
    x = torch.randn(3, 4, 5, 6, 6)
    pairs = [
        (sl.ThresholdDependentBatchNorm2d(0.7, 1.5, 5), layer.ThresholdDependentBatchNorm2d(0.7, 1.5, 5)),
        (sl.TemporalEffectiveBatchNorm2d(3, 5), layer.TemporalEffectiveBatchNorm2d(3, 5)),
    ]
    for ref, ours in pairs:
        with torch.no_grad():
            for p in ref.parameters():
                p.copy_(torch.randn_like(p))
        ours.load_state_dict(ref.state_dict())
        assert_close(type(ours).__name__, ref(x), ours(x), 1e-6)
        assert_close(type(ours).__name__ + " running_mean", ref.running_mean, ours.running_mean, 1e-6)
    ref, ours = sl.BatchNormThroughTime2d(3, 5, step_mode="m"), layer.BatchNormThroughTime2d(3, 5, step_mode="m")
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p))
    ours.load_state_dict(ref.state_dict())
    assert_close("BNTT", ref(x), ours(x), 1e-6)


# ------------------------------------------------------------------------------------------- misc
def test_voting_layer():
    v = layer.VotingLayer(5)
    x = torch.arange(20.0).view(2, 10)
    assert torch.equal(v(x), torch.tensor([[2.0, 7.0], [12.0, 17.0]]))
    v.step_mode = "m"
    xs = torch.rand(3, 2, 23)  # 23 -> 4 groups, the remainder is dropped
    y = v(xs)
    assert y.shape == (3, 2, 4)
    assert_close("voting", xs[..., :20].reshape(3, 2, 4, 5).mean(-1), y, 1e-6)
    with pytest.raises(ValueError):
        layer.VotingLayer(0)


def test_delay_single_and_multi_step():
    d = layer.Delay(2)
    xs = torch.arange(1.0, 6.0).view(5, 1)
    ys = torch.stack([d(x) for x in xs])
    assert torch.equal(ys.flatten(), torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0]))
    # the queue carries across calls; multi-step continues where single-step stopped
    d.step_mode = "m"
    y = d(torch.tensor([[10.0], [11.0], [12.0]]))
    assert torch.equal(y.flatten(), torch.tensor([4.0, 5.0, 10.0]))
    functional.reset_net(d)
    y = d(torch.tensor([[7.0]]))  # T shorter than the delay
    assert torch.equal(y.flatten(), torch.tensor([0.0]))
    y = d(torch.tensor([[8.0], [9.0], [1.0]]))
    assert torch.equal(y.flatten(), torch.tensor([0.0, 7.0, 8.0]))
    assert torch.equal(layer.Delay(0, step_mode="m")(xs), xs)
    with pytest.raises(ValueError):
        layer.Delay(-1)


def test_synapse_filter_closed_form_and_grad():
    f = layer.SynapseFilter(tau=4.0, learnable=True, step_mode="m")
    x = (torch.rand(6, 3, 4) > 0.6).float()
    y = f(x)
    i, ref = torch.zeros(3, 4), []
    for t in range(6):
        i = i - (1 - x[t]) * i / 4.0 + x[t]
        ref.append(i)
    assert_close("synapse filter", torch.stack(ref), y, 1e-5)
    y.sum().backward()
    assert f.w.grad is not None and torch.isfinite(f.w.grad)
    functional.reset_net(f)
    functional.set_step_mode(f, "s")
    with torch.no_grad():
        ys = torch.stack([f(xt) for xt in x])
    assert_close("synapse filter s vs m", y.detach(), ys, 1e-6)
    with pytest.raises(ValueError):
        layer.SynapseFilter(tau=1.0)


def test_misc_layers_match_spikingjelly(sl):
    xs = (torch.rand(7, 2, 30) > 0.5).float()
    for mode in ("s", "m"):
        pairs = [(sl.VotingLayer(10, step_mode=mode), layer.VotingLayer(10, step_mode=mode)),
                 (sl.Delay(3, step_mode=mode), layer.Delay(3, step_mode=mode)),
                 (sl.SynapseFilter(5.0, learnable=False, step_mode=mode), layer.SynapseFilter(5.0, step_mode=mode)),
                 (sl.SynapseFilter(3.0, learnable=True, step_mode=mode), layer.SynapseFilter(3.0, True, mode))]
        for ref, ours in pairs:
            ours.load_state_dict(ref.state_dict())
            for _ in range(2):  # state carries over a second call
                if mode == "s":
                    yr = torch.stack([ref(x) for x in xs])
                    yo = torch.stack([ours(x) for x in xs])
                else:
                    yr, yo = ref(xs), ours(xs)
                assert_close(f"{type(ours).__name__} {mode}", yr, yo, 1e-6)


# -------------------------------------------------------------------------------------- attention
def test_spiking_self_attention_shapes_grad_and_errors():
    ssa = layer.SpikingSelfAttention(dim=16, num_heads=4)
    assert ssa.attn_lif.v_threshold == 0.5 and ssa.qkv_lif.detach_reset
    x = (torch.rand(2, 3, 16, 9) > 0.5).float().requires_grad_()
    y = ssa(x)
    assert y.shape == (2, 3, 16, 9)
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
    y.sum().backward()
    assert ssa.qkv_conv_bn[0].weight.grad is not None
    with pytest.raises(ValueError, match="divisible"):
        layer.SpikingSelfAttention(dim=10, num_heads=4)
    with pytest.raises(ValueError, match=r"\[T, N, C, L\]"):
        ssa(torch.rand(3, 16, 9))


def test_spiking_self_attention_matches_spikingjelly(sl):
    ref = sl.SpikingSelfAttention(dim=32, num_heads=4)
    ours = layer.SpikingSelfAttention(dim=32, num_heads=4)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
    ours.load_state_dict(ref.state_dict())
    x = (torch.rand(3, 2, 32, 10) > 0.5).float()
    xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yo = ref(xr), ours(xo)
    assert yr.sum() > 0
    assert_close("SSA output", yr, yo, 1e-6)
    g = torch.randn_like(yr)
    yr.backward(g)
    yo.backward(g)
    assert_close("SSA input grad", xr.grad, xo.grad, 1e-4)
    for (k, pr), (_, po) in zip(ref.named_parameters(), ours.named_parameters()):
        assert_close(f"SSA grad {k}", pr.grad, po.grad, 1e-4)
