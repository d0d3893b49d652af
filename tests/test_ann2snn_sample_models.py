"""``fastspike.ann2snn.sample_models`` re-exports its submodules' names at package level, as SpikingJelly 2.0's
``ann2snn.sample_models`` does (``from spikingjelly.activation_based.ann2snn.sample_models import ResNet18``)."""
import pytest
import torch

pytestmark = pytest.mark.peers

NAMES = ("BasicBlock", "Bottleneck", "ResNet", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "test",
         "CNN")


def test_package_names_are_the_submodule_objects():
    from fastspike.ann2snn import sample_models as fs
    for name in NAMES:
        sub = fs.mnist_cnn if name == "CNN" else fs.cifar10_resnet
        assert getattr(fs, name) is getattr(sub, name), name
        assert name in fs.__all__


@pytest.mark.parametrize("name", ["ResNet18", "ResNet50", "CNN"])
def test_package_level_models_match_spikingjelly(name):
    from spikingjelly.activation_based.ann2snn import sample_models as sj

    from fastspike.ann2snn import sample_models as fs
    torch.manual_seed(0)
    ref = getattr(sj, name)().eval()
    ours = getattr(fs, name)().eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = torch.rand(2, 1, 28, 28) if name == "CNN" else torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


def test_package_level_blocks_and_resnet_signatures():
    from spikingjelly.activation_based.ann2snn import sample_models as sj

    from fastspike.ann2snn import sample_models as fs
    for block, planes_out in ((fs.BasicBlock, 8), (fs.Bottleneck, 32)):
        sj_block = getattr(sj, block.__name__)
        torch.manual_seed(1)
        ref = sj_block(4, 8, 2).eval()
        ours = block(4, 8, stride=2).eval()
        ours.load_state_dict(ref.state_dict())
        x = torch.rand(2, 4, 8, 8)
        y = ours(x)
        assert y.shape == (2, planes_out, 4, 4)
        torch.testing.assert_close(y, ref(x), rtol=0, atol=0)
    net = fs.ResNet(fs.BasicBlock, [1, 1, 1, 1], num_classes=7)
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 7)
    assert fs.test().shape == (1, 10)
