"""SpikingJelly 2.0's ANN2SNN recipe API in fastspike.ann2snn: FXConverter/ModuleConverter, RateCodingRecipe,
LocalThresholdBalancingRecipe, the step-mode adapter, estimate_delay_start and download_url. Where SpikingJelly is
installed, conversions are compared with its own, spike for spike (tests marked peers)."""
import copy
import http.server
import inspect
import threading

import pytest
import torch
import torch.nn as nn

from fastspike import ann2snn, functional, neuron
from helpers import DEVICE


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _bn_(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_((torch.rand(n, generator=g) - 0.5) * 0.4)
    return model.eval()


def _cnn(seed=0):
    torch.manual_seed(seed)
    return _bn_(nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 10), nn.ReLU(), nn.Linear(10, 4)), seed)


class _MLP(nn.Module):
    """Nested modules (per-parent hook numbering), a residual sum and a BatchNorm1d that is not folded."""

    def __init__(self):
        super().__init__()
        self.fc1, self.act1 = nn.Linear(12, 16), nn.ReLU()
        self.block = nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        h = self.act1(self.fc1(x))
        return self.head(h + self.block(h))


def _mlp(seed=0):
    torch.manual_seed(seed)
    return _bn_(_MLP(), seed)


def _data(shape, n=3, batch=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, *shape, generator=g), torch.zeros(batch)) for _ in range(n)]


def _run(snn, x, T, fn=functional):
    fn.reset_net(snn)
    with torch.no_grad():
        return torch.stack([snn(x) for _ in range(T)])


RATE_CASES = {
    "max": dict(mode="max"),
    "percentile": dict(mode="99.9%"),
    "fraction_momentum": dict(mode=0.5, momentum=0.3),
    "no_fuse": dict(mode="Max", fuse_flag=False),
    "channel_wise": dict(mode="max", channel_wise=True),
    "channel_wise_pool_half": dict(mode="99%", channel_wise=True, pre_spike_maxpool=True, half_threshold=True),
}


# ------------------------------------------------------------------------------------------------
# agreement with SpikingJelly
# ------------------------------------------------------------------------------------------------
@pytest.mark.peers
@pytest.mark.parametrize("net,case", [(n, c) for n in ("cnn", "mlp") for c in RATE_CASES
                                      if not (n == "mlp" and c == "channel_wise_pool_half")])  # no MaxPool2d in the MLP
def test_rate_coding_matches_spikingjelly(net, case):
    sj = pytest.importorskip("spikingjelly.activation_based.ann2snn")
    sjf = pytest.importorskip("spikingjelly.activation_based.functional")
    ann, shape = (_cnn(), (1, 14, 14)) if net == "cnn" else (_mlp(), (12,))
    data, x = _data(shape), torch.rand(8, *shape)
    kw = RATE_CASES[case]
    ref = sj.Converter(recipe=sj.RateCodingRecipe(dataloader=data, **kw)).convert(copy.deepcopy(ann))
    out = ann2snn.Converter(recipe=ann2snn.RateCodingRecipe(dataloader=data, **kw)).convert(copy.deepcopy(ann))
    assert sorted(out.state_dict()) == sorted(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(out.state_dict()[k], v), k
    y_ref, y = _run(ref, x, 24, sjf), _run(out, x, 24)
    assert y.abs().sum() > 0
    assert torch.equal(y, y_ref)
    # multi-step mode gives the same sequence in both
    sjf.set_step_mode(ref, "m")
    functional.set_step_mode(out, "m")
    sjf.reset_net(ref)
    functional.reset_net(out)
    xs = x.unsqueeze(0).expand(24, *x.shape)
    with torch.no_grad():
        assert torch.equal(out(xs), ref(xs))
        functional.reset_net(out)
        # a batch of T*N rows rounds its matrix products differently from N rows: same values up to rounding
        torch.testing.assert_close(out(xs).mean(0), y.mean(0), rtol=0, atol=1e-4)


@pytest.mark.peers
@pytest.mark.parametrize("net", ["cnn", "mlp"])
def test_local_threshold_balancing_matches_spikingjelly(net):
    sj = pytest.importorskip("spikingjelly.activation_based.ann2snn")
    sjf = pytest.importorskip("spikingjelly.activation_based.functional")
    ann, shape = (_cnn(3), (1, 14, 14)) if net == "cnn" else (_mlp(3), (12,))
    data, x = _data(shape, seed=4), torch.rand(8, *shape)
    ref = sj.FXConverter(sj.LocalThresholdBalancingRecipe(dataloader=data)).convert(copy.deepcopy(ann))
    out = ann2snn.FXConverter(ann2snn.LocalThresholdBalancingRecipe(dataloader=data)).convert(copy.deepcopy(ann))
    for k, v in ref.state_dict().items():
        assert torch.equal(out.state_dict()[k], v), k
    y = _run(out, x, 24)
    assert y.abs().sum() > 0 and torch.equal(y, _run(ref, x, 24, sjf))
    for T, batches in ((100, 2), (6, 1)):
        with pytest.warns(RuntimeWarning) if T == 6 else _no_warning():
            d = ann2snn.estimate_delay_start(out, data, "cpu", T, batches)
            d_ref = sj.estimate_delay_start(ref, data, "cpu", T, batches)
        assert d == d_ref


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.peers
def test_estimate_delay_start_matches_spikingjelly_on_rate_coding():
    sj = pytest.importorskip("spikingjelly.activation_based.ann2snn")
    ann, data = _cnn(5), _data((1, 14, 14), seed=6)
    ref = sj.FXConverter(sj.RateCodingRecipe(dataloader=data)).convert(copy.deepcopy(ann))
    out = ann2snn.FXConverter(ann2snn.RateCodingRecipe(dataloader=data)).convert(copy.deepcopy(ann))
    got = ann2snn.estimate_delay_start(out, data, "cpu", 200, 3)
    assert got > 0 and got == sj.estimate_delay_start(ref, data, "cpu", 200, 3)


@pytest.mark.peers
def test_public_names_of_spikingjelly_ann2snn_that_fastspike_implements():
    sj = pytest.importorskip("spikingjelly.activation_based.ann2snn")
    left_out = {"Qwen2SNNCalibration", "Qwen2SNNConfig", "Qwen2SNNModel", "Qwen2SNNRecipe", "calibrate_qwen2_snn"}
    # (listed in docs/ann2snn.md with the reason)
    assert set(sj.__all__) - set(ann2snn.__all__) == left_out
    import inspect

    for name in set(sj.__all__) - left_out:
        ours, theirs = getattr(ann2snn, name), getattr(sj, name)
        if inspect.isclass(theirs):
            theirs = theirs.__init__
            ours = ours.__init__
        if callable(theirs):
            p_ours = list(inspect.signature(ours).parameters.items())
            p_theirs = list(inspect.signature(theirs).parameters.items())
            assert [(k, v.default) for k, v in p_ours] == [(k, v.default) for k, v in p_theirs], name


# ------------------------------------------------------------------------------------------------
# fastspike's own checks (no SpikingJelly needed)
# ------------------------------------------------------------------------------------------------
def test_rate_coding_structure_and_rates_approach_the_ann():
    ann, data = _cnn(), _data((1, 14, 14), n=4)
    snn = ann2snn.Converter(recipe=ann2snn.RateCodingRecipe(dataloader=data, mode="99.9%")).convert(ann)
    assert isinstance(snn, torch.fx.GraphModule)
    names = dict(snn.named_modules())
    for i in range(3):
        assert isinstance(names[f"spiking_{i}.if_node"], neuron.IFNode)
        assert isinstance(names[f"spiking_{i}.scaler0"], ann2snn.VoltageScaler)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ReLU, ann2snn.VoltageHook)) for m in snn.modules())
    snn = snn.to(DEVICE)
    x = data[0][0].to(DEVICE)
    with torch.no_grad():
        ref = ann.to(DEVICE)(x)
        err = [(_run(snn, x, T).mean(0) - ref).abs().mean().item() for T in (8, 64, 256)]
    assert err[2] < err[0] and err[2] < 0.15 * ref.abs().mean().item(), err
    # the ANN is left as it was
    assert any(isinstance(m, nn.BatchNorm2d) for m in ann.modules())


def test_converter_dispatches_to_the_recipe_api_and_keeps_the_fastspike_converter():
    recipe = ann2snn.RateCodingRecipe(dataloader=_data((12,)))
    for conv in (ann2snn.Converter(recipe), ann2snn.Converter(recipe=recipe, device="cpu")):
        assert isinstance(conv, ann2snn.FXConverter) and conv.recipe is recipe
        assert isinstance(conv, ann2snn.Converter) and conv.device in (None, "cpu")
    for legacy in (ann2snn.Converter(stats={"1": 1.0}), ann2snn.Converter(_data((12,))),
                   ann2snn.Converter(dataloader=_data((12,)), mode="max")):
        assert isinstance(legacy, ann2snn.ReLUConverter) and not isinstance(legacy, ann2snn.FXConverter)
    assert isinstance(legacy(_mlp()), torch.fx.GraphModule)
    # SpikingJelly's signature: Converter(recipe, device=None)
    params = list(inspect.signature(ann2snn.Converter).parameters.values())
    assert [(p.name, p.default) for p in params] == [("recipe", inspect.Parameter.empty), ("device", None)]
    assert ann2snn.converter.Converter is ann2snn.Converter
    clone = copy.deepcopy(ann2snn.Converter(recipe, device="cpu"))
    assert type(clone) is ann2snn.Converter and clone.device == "cpu"
    with pytest.raises(TypeError):
        ann2snn.Converter()  # SpikingJelly's Converter needs its recipe


def test_recipe_lifecycle_order_and_module_converter():
    calls = []

    class Recorder(ann2snn.FXConversionRecipe):
        def __getattribute__(self, name):
            if name in ("validate", "before_trace", "after_trace", "insert_observers", "calibrate", "replace",
                        "finalize"):
                calls.append(name)
            return object.__getattribute__(self, name)

    ann = _mlp()
    out = ann2snn.FXConverter(Recorder()).convert(ann)
    assert calls == ["validate", "before_trace", "after_trace", "insert_observers", "calibrate", "replace",
                     "finalize"]
    x = torch.rand(4, 12)
    with torch.no_grad():
        assert torch.equal(out(x), ann(x))

    class Double(ann2snn.ModuleConversionRecipe):
        def convert_module(self, converter, ann):
            return nn.Sequential(ann, nn.Identity())

    res = ann2snn.ModuleConverter(Double()).convert(ann)
    assert isinstance(res, nn.Sequential) and res[0] is not ann

    class Bad(ann2snn.ModuleConversionRecipe):
        def convert_module(self, converter, ann):
            return 3

    with pytest.raises(TypeError, match="must return a torch.nn.Module, but returned int"):
        ann2snn.ModuleConverter(Bad()).convert(ann)


def test_bad_arguments_raise_spikingjelly_exception_types_with_names():
    with pytest.raises(TypeError, match="ModuleConverter"):
        ann2snn.FXConverter(ann2snn.ModuleConversionRecipe())
    with pytest.raises(TypeError, match="FXConverter"):
        ann2snn.ModuleConverter(ann2snn.FXConversionRecipe())
    with pytest.raises(ValueError, match="rate_coding recipe needs parameters"):
        ann2snn.FXConverter("rate_coding")
    assert isinstance(ann2snn.Converter("transformer_td_equivalent").recipe, ann2snn.TransformerTDEquivalentRecipe)
    with pytest.raises(ValueError, match="unknown recipe name 'nope'"):
        ann2snn.FXConverter("nope")
    with pytest.raises(TypeError, match="got int"):
        ann2snn.FXConverter(3)
    conv = lambda **kw: ann2snn.FXConverter(ann2snn.RateCodingRecipe(**kw)).convert(_mlp())  # noqa: E731
    with pytest.raises(ValueError, match="needs calibration data"):
        conv(dataloader=None)
    with pytest.raises(NotImplementedError, match="mode='median'"):
        conv(dataloader=_data((12,)), mode="median")
    with pytest.raises(NotImplementedError, match="mode=1.5"):
        conv(dataloader=_data((12,)), mode=1.5)
    with pytest.raises(ValueError, match="momentum must be a finite number in \\[0, 1\\], but got 2"):
        conv(dataloader=_data((12,)), momentum=2)
    with pytest.raises(ValueError, match="eps must be a positive number, but got 0"):
        conv(dataloader=_data((12,)), eps=0)
    with pytest.raises(ValueError, match="neuron_factory must be None"):
        ann2snn.RateCodingRecipe([], channel_wise=True, half_threshold=True, neuron_factory=lambda s: nn.Identity())
    with pytest.raises(ValueError, match="yielded no batches"):
        conv(dataloader=[])
    with pytest.raises(ValueError, match="activation scale of ReLU 'act1' \\(hook 'voltage_hook_0'\\) is 0.0"):
        dead = _mlp()
        with torch.no_grad():
            dead.fc1.weight.fill_(-1.0)
            dead.fc1.bias.fill_(-1.0)
        ann2snn.FXConverter(ann2snn.RateCodingRecipe(dataloader=_data((12,)))).convert(dead)
    with pytest.raises(ValueError, match="channel_dim must be an int"):
        ann2snn.ChannelVoltageScaler(torch.ones(3), channel_dim="1")
    with pytest.raises(ValueError, match="finite positive"):
        ann2snn.ChannelVoltageScaler(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="time_steps must be a positive int"):
        ann2snn.estimate_delay_start(_mlp(), [], "cpu", 0)


def test_neuron_factory_and_channel_wise_multi_step():
    seen = []

    def factory(scale):
        seen.append(scale)
        return neuron.IFNode(v_threshold=2.0, v_reset=None)

    ann, data = _cnn(2), _data((1, 14, 14))
    snn = ann2snn.FXConverter(ann2snn.RateCodingRecipe(dataloader=data, neuron_factory=factory)).convert(ann)
    assert len(seen) == 3 and all(s > 0 for s in seen)
    assert float(snn.get_submodule("spiking_0.scaler0").scale) == pytest.approx(2.0 / seen[0], rel=1e-6)
    x = torch.rand(5, 1, 14, 14)
    y = _run(snn, x, 10)
    functional.set_step_mode(snn, "m")
    functional.reset_net(snn)
    with torch.no_grad():
        assert torch.equal(snn(x.unsqueeze(0).expand(10, *x.shape)), y)
    with pytest.raises(ValueError, match="expects a sequence \\[T, N, \\*\\]"):
        functional.reset_net(snn)
        snn(torch.rand(5))


def test_voltage_hook_statistics_and_large_quantiles():
    hook = ann2snn.VoltageHook(momentum=0.5, mode="Max")
    hook(torch.tensor([1.0, 3.0]))
    hook(torch.tensor([5.0]))
    assert float(hook.scale) == pytest.approx(4.0) and hook.num_batches_tracked == 3
    hook.eval()
    hook(torch.tensor([100.0]))
    assert float(hook.scale) == pytest.approx(4.0)
    from fastspike.ann2snn.modules import quantile

    x = torch.rand(1 << 12)
    assert torch.equal(quantile(x, 0.999), torch.quantile(x, 0.999))
    big = torch.arange((1 << 24) + 7, dtype=torch.float32)  # torch.quantile refuses this size
    want = 0.999 * (big.numel() - 1)
    assert float(quantile(big, 0.999)) == pytest.approx(want, rel=1e-6)


# ------------------------------------------------------------------------------------------------
# download_url against a local HTTP server with Range support
# ------------------------------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    payload = bytes(range(256)) * 40
    honour_range = True
    cut_after = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        data, start = self.payload, 0
        rng = self.headers.get("Range")
        if rng and self.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after is not None:
            body = body[:type(self).cut_after]
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/w.pth"
    srv.shutdown()
    srv.server_close()
    _Handler.honour_range, _Handler.cut_after = True, None


def test_download_url_resumes_and_never_leaves_a_half_file(server, tmp_path):
    dst = tmp_path / "w.pth"
    n = len(_Handler.payload)
    _Handler.cut_after = 1000  # the connection drops after 1000 bytes
    with pytest.raises(Exception):
        ann2snn.download_url(server, str(dst))
    assert not dst.exists() and (tmp_path / "w.pth.part").stat().st_size == 1000
    _Handler.cut_after = None
    assert ann2snn.download_url(server, str(dst)) == n  # resumed with a Range request
    assert dst.read_bytes() == _Handler.payload and not (tmp_path / "w.pth.part").exists()
    assert ann2snn.download_url(server, str(dst)) == n  # complete: not fetched again
    # a server that ignores Range: the partial file is replaced
    dst.unlink()
    (tmp_path / "w.pth.part").write_bytes(b"x" * 10)
    _Handler.honour_range = False
    assert ann2snn.download_url(server, str(dst)) == n and dst.read_bytes() == _Handler.payload


@pytest.mark.peers
def test_sample_models_have_spikingjelly_state_dicts_and_convert_like_it():
    sj_models = pytest.importorskip("spikingjelly.activation_based.ann2snn.sample_models.cifar10_resnet")
    sj = pytest.importorskip("spikingjelly.activation_based.ann2snn")
    sjf = pytest.importorskip("spikingjelly.activation_based.functional")
    from spikingjelly.activation_based.ann2snn.sample_models import mnist_cnn as sj_mnist

    from fastspike.ann2snn.sample_models import cifar10_resnet, mnist_cnn

    assert list(mnist_cnn.CNN().state_dict()) == list(sj_mnist.CNN().state_dict())
    for name in ("ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152"):
        assert list(getattr(cifar10_resnet, name)().state_dict()) == list(getattr(sj_models, name)().state_dict())
    torch.manual_seed(0)
    ref = _bn_(sj_models.ResNet18())
    ours = cifar10_resnet.ResNet18().eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
    assert cifar10_resnet.test().shape == (1, 10)
    # a residual network through the rate-coding recipe: the same spikes as SpikingJelly's conversion
    data = [(torch.rand(2, 3, 32, 32),)]
    a = sj.FXConverter(sj.RateCodingRecipe(dataloader=data)).convert(copy.deepcopy(ref))
    b = ann2snn.FXConverter(ann2snn.RateCodingRecipe(dataloader=data)).convert(ours)
    y = _run(b, x, 3)
    assert y.abs().sum() > 0 and torch.equal(y, _run(a, x, 3, sjf))
