"""The MNIST CNN of SpikingJelly's ANN2SNN tutorial: three Conv(3x3)-BatchNorm-ReLU-AvgPool(2) stages of 32
channels, Flatten and a Linear(32, 10) head, for 28 x 28 inputs."""
import torch.nn as nn

__all__ = ["CNN"]


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        stages = []
        for c_in in (1, 32, 32):
            stages += [nn.Conv2d(c_in, 32, 3, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2, 2)]
        self.network = nn.Sequential(*stages, nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.network(x)
