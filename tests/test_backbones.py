"""Backbones: the CIFAR stem rule (<= 64 px), feature sizes, zero-init residuals, names."""

import pytest
import torch
import torch.nn as nn

from infossl.backbones import BackboneError, build_backbone


def test_small_images_get_the_cifar_stem_and_keep_resolution():
    model, dim = build_backbone("resnet18", image_size=32)
    assert dim == 512
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    # The stem keeps 32 px maps at 32 px (the ImageNet stem would give 8 px).
    assert (
        model.layer1(model.relu(model.bn1(model.conv1(torch.zeros(1, 3, 32, 32))))).shape[-1] == 32
    )


def test_large_images_keep_the_imagenet_stem():
    model, _ = build_backbone("resnet18", image_size=96)
    assert model.conv1.kernel_size == (7, 7) and isinstance(model.maxpool, nn.MaxPool2d)


def test_zero_init_residual_zeroes_the_last_bn_of_each_block():
    model, _ = build_backbone("resnet18", image_size=32, zero_init_residual=True)
    assert torch.count_nonzero(model.layer1[0].bn2.weight) == 0
    model, _ = build_backbone("resnet18", image_size=32, zero_init_residual=False)
    assert torch.count_nonzero(model.layer1[0].bn2.weight) > 0


@pytest.mark.parametrize(
    ("name", "dim"), [("resnet50", 2048), ("timm:resnet18", 512), ("lightly:resnet-9", 128)]
)
def test_feature_dims(name, dim):
    model, feature_dim = build_backbone(name, image_size=16, width=0.25)
    assert feature_dim == dim  # lightly: 512 x width 0.25
    out = model(torch.zeros(2, 3, 16, 16))
    assert out.shape == (2, feature_dim)


def test_timm_resnet_gets_the_cifar_stem():
    model, _ = build_backbone("timm:resnet18", image_size=32)
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, nn.Identity)


@pytest.mark.parametrize("name", ["resnet19", "timm:no_such_net", "lightly:resnet-7"])
def test_unknown_names_are_backbone_errors(name):
    with pytest.raises(BackboneError):
        build_backbone(name, image_size=32)


def test_exported_backbone_loads_into_a_plain_torchvision_resnet(tmp_path):
    """backbone.pt is what a user without InfoSSL loads: torchvision's resnet18 with the CIFAR
    stem swapped by hand, strict keys, same features."""
    import torchvision

    from infossl.rundir import export_backbone

    torch.manual_seed(0)
    ours, _ = build_backbone("resnet18", image_size=32)
    ours = ours.to(memory_format=torch.channels_last).eval()  # as training stores it
    export_backbone(tmp_path, ours)
    plain = torchvision.models.resnet18(weights=None)
    plain.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    plain.maxpool, plain.fc = nn.Identity(), nn.Identity()
    plain.load_state_dict(torch.load(tmp_path / "backbone.pt", weights_only=True), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), ours(x), atol=1e-5)
