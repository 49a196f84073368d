"""VGG-19 feature network: torchvision key layout, weight loading, bad files, random-filter fallback."""

import pytest
import torch
from torch import nn

from gan_core.errors import BundleInputError
from gan_core.vgg import LAYER_INDEX, VGG19Features, vgg19_state_dict_shapes


def torchvision_layout_state_dict(seed: int = 1) -> dict[str, torch.Tensor]:
    """The keys and shapes of torchvision.models.vgg19().state_dict() (features.<i> numbering)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
    layers, in_ch = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = v
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    state = {k: torch.randn(v.shape, generator=gen) * 0.05 for k, v in model.state_dict().items()}
    # The last classifier layer (the 25088 x 4096 first one is left out to keep the test small).
    state["classifier.6.weight"] = torch.zeros(1000, 4096)
    state["classifier.6.bias"] = torch.zeros(1000)
    return state


def test_key_layout_matches_torchvision_numbering():
    shapes = vgg19_state_dict_shapes()
    conv_indices = sorted(int(k.split(".")[1]) for k in shapes if k.endswith("weight"))
    assert conv_indices == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert shapes["features.28.weight"] == (512, 512, 3, 3)
    assert LAYER_INDEX["relu4_2"] == 22 and LAYER_INDEX["relu5_1"] == 29


def test_loads_torchvision_state_dict_and_uses_it(tmp_path):
    state = torchvision_layout_state_dict()
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    net = VGG19Features(weights=path)
    assert net.pretrained
    assert torch.equal(net.features[21].weight, state["features.21.weight"])
    assert torch.equal(net.features[28].bias, state["features.28.bias"])
    assert all(not p.requires_grad for p in net.parameters())
    out = net(torch.rand(1, 1, 32, 32) * 2 - 1)
    assert set(out) == {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1", "relu4_2"}
    assert out["relu1_1"].shape == (1, 64, 32, 32)
    assert out["relu4_2"].shape == (1, 512, 4, 4)
    assert out["relu5_1"].shape == (1, 512, 2, 2)
    # relu1_1 recomputed by hand from the loaded filters and the ImageNet normalisation.
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rgb = (((x + 1) / 2).repeat(1, 3, 1, 1) - mean) / std
    ref = torch.relu(nn.functional.conv2d(rgb, state["features.0.weight"], state["features.0.bias"], padding=1))
    torch.testing.assert_close(net(x)["relu1_1"], ref)


def test_not_a_vgg19_state_dict_lists_keys(tmp_path):
    state = torchvision_layout_state_dict()
    state["features.21.weight"] = torch.zeros(256, 512, 3, 3)
    del state["features.25.bias"]
    state["backbone.fc.weight"] = torch.zeros(3)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(BundleInputError) as err:
        VGG19Features(weights=path)
    msg = str(err.value)
    assert "features.25.bias" in msg and "features.21.weight" in msg and "backbone.fc.weight" in msg
    assert "vgg_weights" in msg


def test_pickled_module_is_refused_weights_only(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(nn.Linear(2, 2), path)
    with pytest.raises(BundleInputError, match="weights-only"):
        VGG19Features(weights=path)


def test_missing_file(tmp_path):
    with pytest.raises(BundleInputError, match="not found"):
        VGG19Features(weights=tmp_path / "absent.pth")


def test_random_filters_warn_and_are_fixed_by_seed():
    with pytest.warns(UserWarning, match="RANDOM VGG-19 filters"):
        a = VGG19Features(layers=("relu1_1", "relu2_1"), seed=3)
    with pytest.warns(UserWarning):
        b = VGG19Features(layers=("relu1_1", "relu2_1"), seed=3)
    assert torch.equal(a.features[5].weight, b.features[5].weight)
    assert len(a.features) == LAYER_INDEX["relu2_1"] + 1
    a.train()
    assert not a.training
    # Gradients flow to the input through the frozen network.
    x = torch.zeros(1, 1, 16, 16, requires_grad=True)
    a(x)["relu2_1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
