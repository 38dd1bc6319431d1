"""Backbones: torchvision ResNets, any timm model, and lightly's CIFAR ResNet generator.

``build_backbone`` returns ``(module, feature_dim)``; the module maps images to flat features.
For images of 64 px or less the CIFAR stem (3x3 stride-1 first conv, no max-pool) is used:
with the ImageNet stem SimCLR loses more than 10 points on CIFAR-10 (lightly#1419). solo-learn
and lightly both swap the stem; we use lightly's padding of 1, which keeps 32 px maps at 32 px.
"""

from __future__ import annotations

import contextlib
import io

import timm
import torch.nn as nn
import torchvision
from lightly.models import ResNetGenerator

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50")
SMALL_IMAGE_MAX_SIZE = 64


class BackboneError(ValueError):
    """An unknown or unusable backbone name."""


def uses_small_image_stem(small_images: bool | str, image_size: int) -> bool:
    if small_images == "auto":
        return image_size <= SMALL_IMAGE_MAX_SIZE
    return bool(small_images)


def _cifar_stem(model: nn.Module) -> None:
    """Replace an ImageNet ResNet stem (7x7/2 conv + max-pool) by the CIFAR one in place."""
    out_channels = model.conv1.out_channels
    model.conv1 = nn.Conv2d(3, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


def _imagenet_weights(name: str):
    """torchvision's ImageNet weights, from the torch hub cache or the network; one clear line
    when neither has them (offline machines)."""
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    try:
        # torch prints "Downloading: URL" (stdout) before trying; our one line says it all.
        with contextlib.redirect_stdout(io.StringIO()):
            weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; a bad hash a RuntimeError
        raise BackboneError(
            f"backbone.pretrained=true: cannot load torchvision's {name} ImageNet weights "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); put "
            f"{weights.url.rsplit('/', 1)[-1]} in $TORCH_HOME/hub/checkpoints or use "
            "backbone.pretrained=false"
        ) from err
    return weights


def _torchvision_resnet(name: str, small: bool, zero_init_residual: bool, pretrained: bool):
    if pretrained:
        # zero_init_residual only affects initialisation; pretrained weights replace it.
        model = getattr(torchvision.models, name)(weights=_imagenet_weights(name))
    else:
        model = getattr(torchvision.models, name)(
            weights=None, zero_init_residual=zero_init_residual
        )
    if small:
        _cifar_stem(model)
    feature_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model, feature_dim


def _timm_model(name: str, small: bool):
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0)
    except RuntimeError as err:  # timm raises RuntimeError("Unknown model ...")
        raise BackboneError(
            f"unknown timm model '{name}'; list them with python -c \"import timm; "
            f"print(timm.list_models('*resnet*'))\""
        ) from err
    if small and isinstance(getattr(model, "conv1", None), nn.Conv2d) and hasattr(model, "maxpool"):
        _cifar_stem(model)
    # timm's ResNets already zero-initialise the last norm of each block (zero_init_last=True).
    return model, model.num_features


def _lightly_resnet(name: str, width: float):
    # lightly's generator already has the CIFAR stem; its final linear layer is dropped.
    resnet = ResNetGenerator(name, width=width)
    body = nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return body, resnet.linear.in_features


def build_backbone(
    name: str,
    image_size: int,
    small_images: bool | str = "auto",
    zero_init_residual: bool = True,
    width: float = 1.0,
    pretrained: bool = False,
) -> tuple[nn.Module, int]:
    """A feature extractor by name: ``resnet18|34|50``, ``timm:NAME``, ``lightly:resnet-N``."""
    small = uses_small_image_stem(small_images, image_size)
    if pretrained:
        _check_pretrained_name(name)
    if name in TORCHVISION_RESNETS:
        return _torchvision_resnet(name, small, zero_init_residual, pretrained)
    if name.startswith("timm:"):
        return _timm_model(name.removeprefix("timm:"), small)
    if name.startswith("lightly:"):
        try:
            return _lightly_resnet(name.removeprefix("lightly:"), width)
        except ValueError as err:
            raise BackboneError(f"{err}; use lightly:resnet-9|18|34|50|101|152") from err
    raise BackboneError(
        f"unknown backbone '{name}'; use one of {', '.join(TORCHVISION_RESNETS)}, "
        "timm:NAME (any timm model) or lightly:resnet-9|18|34|50"
    )


def _check_pretrained_name(name: str) -> None:
    if name not in TORCHVISION_RESNETS:
        raise BackboneError(
            f"backbone.pretrained=true is supported for {', '.join(TORCHVISION_RESNETS)} "
            f"(torchvision ImageNet weights), not '{name}'"
        )


def check_pretrained_weights(backbone_cfg: dict) -> None:
    """Fail before a run directory is created when requested ImageNet weights are missing."""
    if backbone_cfg["pretrained"]:
        _check_pretrained_name(backbone_cfg["name"])
        _imagenet_weights(backbone_cfg["name"])
