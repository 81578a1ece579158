"""CAM family against hand computations on tiny networks with known weights; batched equals per-patch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.explain.cam import class_activation_maps
from core.models.patch_cnn import PatchResNet


class TinyGapNet(nn.Module):
    """conv (known weights) -> ReLU -> global average pooling -> linear (known weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 2, 1, bias=False)
        self.act = nn.ReLU()
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.features.weight[:] = torch.tensor([1.0, -2.0]).view(2, 1, 1, 1)
            self.fc.weight[:] = torch.tensor([[0.5, 1.0], [-1.0, 2.0], [3.0, 0.0]])
            self.fc.bias[:] = torch.tensor([0.1, 0.2, 0.3])

    def forward(self, x):
        return self.fc(self.act(self.features(x)).mean((2, 3)))


def test_cam_equals_the_weighted_feature_sum_exactly():
    net = TinyGapNet()
    x = torch.tensor([[[[1.0, -1.0], [2.0, 0.5]]]])
    a = torch.relu(net.features(x))  # (1, 2, 2, 2): channel 0 = relu(x), channel 1 = relu(-2x)
    for c in range(3):
        cam = class_activation_maps(net, x, [c], "cam", layer_name="act")
        expected = net.fc.weight[c, 0] * a[0, 0] + net.fc.weight[c, 1] * a[0, 1]
        assert torch.equal(cam[0], expected.detach())


def test_gradcam_and_gradcam_plus_plus_match_hand_computations():
    net = TinyGapNet()
    x = torch.tensor([[[[1.0, -1.0], [2.0, 0.5]]]])
    a = torch.relu(net.features(x)).detach()[0]
    hw = 4
    for c in range(3):
        w = net.fc.weight[c].detach()
        # d y_c / d A_k = w_ck / (h w) everywhere, so alpha_k = w_ck / hw.
        expected = torch.relu((w[:, None, None] / hw * a).sum(0))
        assert torch.allclose(class_activation_maps(net, x, [c], "gradcam", layer_name="act")[0], expected, atol=1e-7)
        g = w / hw
        denom = 2 * g**2 + a.sum((1, 2)) * g**3
        alpha = torch.where(denom != 0, g**2 / torch.where(denom != 0, denom, 1.0), 0.0)  # a zero gradient gives zero weight
        weights = alpha * torch.relu(g) * hw
        expected_pp = torch.relu((weights[:, None, None] * a).sum(0))
        assert torch.allclose(class_activation_maps(net, x, [c], "gradcam++", layer_name="act")[0], expected_pp, atol=1e-7)


def test_score_cam_matches_a_hand_computation():
    net = TinyGapNet()
    x = torch.tensor([[[[1.0, -1.0], [2.0, 0.5]]]])
    a = torch.relu(net.features(x)).detach()[0]
    c = 0
    scores = []
    for k in range(2):
        m = a[k]
        m = (m - m.min()) / (m.max() - m.min())
        scores.append(torch.softmax(net(x * m), 1)[0, c])
    s = torch.softmax(torch.stack(scores), 0).detach()
    expected = torch.relu((s[:, None, None] * a).sum(0))
    assert torch.allclose(class_activation_maps(net, x, [c], "scorecam", layer_name="act")[0], expected, atol=1e-6)


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcam++", "scorecam"])
def test_batched_maps_equal_per_patch_maps(method):
    torch.manual_seed(0)
    net = PatchResNet(4).eval()
    x = torch.rand(6, 3, 64, 64)
    classes = torch.tensor([0, 1, 2, 3, 1, 2])
    batched = class_activation_maps(net, x, classes, method)
    single = torch.cat([class_activation_maps(net, x[i : i + 1], classes[i : i + 1], method) for i in range(6)])
    assert batched.shape == (6, 4, 4)
    assert (batched - single).abs().max() <= 1e-5
