"""SpikingJelly 2.0's sample ANNs for conversion (``ann2snn.sample_models``): the MNIST CNN of its ANN2SNN tutorial
and the CIFAR-10 ResNets of its ``resnet18_cifar10`` example, with the same module names (so their
state_dicts and pretrained checkpoints load). As in SpikingJelly, the package re-exports both submodules' names."""
from . import cifar10_resnet, mnist_cnn
from .cifar10_resnet import (BasicBlock, Bottleneck, ResNet, ResNet18, ResNet34, ResNet50, ResNet101, ResNet152,
                             test)
from .mnist_cnn import CNN

__all__ = ["mnist_cnn", "cifar10_resnet", "BasicBlock", "Bottleneck", "ResNet", "ResNet18", "ResNet34", "ResNet50",
           "ResNet101", "ResNet152", "test", "CNN"]
