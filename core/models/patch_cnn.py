"""A small ResNet-style patch classifier in plain torch (no torchvision)."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class PatchResNet(nn.Module):
    """Patch CNN: RGB in [0, 1] -> class logits; ``features`` gives the pooled embedding (for MIL)
    and ``layer4`` is the default CAM target layer (global average pooling + linear head)."""

    mean: torch.Tensor  # registered buffers (saved with the weights), declared for the type checker
    std: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        channel_mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        channel_std: tuple[float, float, float] = (0.25, 0.25, 0.25),
        dropout: float = 0.2,
        stem_stride: int = 2,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(channel_mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(channel_std).view(1, 3, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, c_in = [], widths[0]
        for i, width in enumerate(widths):
            layers.append(BasicBlock(c_in, width, stride=1 if i == 0 else 2))
            c_in = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, num_classes)
        self.embedding_dim = c_in

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))
