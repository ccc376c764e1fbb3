"""Stride-8 ResNet encoders used by HVC, with the input normalisation the official inference uses.

The official code removes the stride of every convolution in layer3 (and layer4 in training) without
adding dilation, so a ResNet keeps torchvision's parameter names and shapes: official checkpoints
load unchanged. Inference stops after layer3 and L2-normalises over channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18, resnet50

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The official training normalises with CIFAR-10 statistics (method description §1.3, §6.2).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

OUTPUT_STRIDE = 8
MOCO_FUSION_WEIGHT = 1.05


@dataclass(frozen=True)
class Normalization:
    """RGB statistics applied to [0, 1] inputs."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


_BUILDERS = {"resnet18": resnet18, "resnet50": resnet50}
FEATURE_DIMS = {
    ("resnet18", "layer3"): 256,
    ("resnet18", "layer4"): 512,
    ("resnet50", "layer3"): 1024,
}


class StrideEightResNet(nn.Module):
    """A torchvision ResNet trunk cut after `last_layer`, with layer3/layer4 strides set to 1.

    Parameter names match torchvision's (`conv1`, `bn1`, `layer1.0.conv1`, ...), so official
    state dicts load as they are. Initialisation is the official one: He-normal convolutions
    (fan-out), BatchNorm at 1/0, and the last BatchNorm of each residual block zeroed.
    """

    def __init__(self, arch: str = "resnet18", last_layer: str = "layer3") -> None:
        super().__init__()
        if (arch, last_layer) not in FEATURE_DIMS:
            raise ValueError(f"unsupported encoder {arch} up to {last_layer}")
        full = _BUILDERS[arch](weights=None, zero_init_residual=True)
        self.arch = arch
        self.last_layer = last_layer
        self.feature_dim = FEATURE_DIMS[(arch, last_layer)]
        self.conv1, self.bn1, self.relu, self.maxpool = (
            full.conv1,
            full.bn1,
            full.relu,
            full.maxpool,
        )
        self.layer1, self.layer2, self.layer3 = full.layer1, full.layer2, full.layer3
        stride_one = [self.layer3]
        if last_layer == "layer4":
            self.layer4 = full.layer4
            stride_one.append(self.layer4)
        for layer in stride_one:
            for module in layer.modules():
                if isinstance(module, nn.Conv2d):
                    module.stride = (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.last_layer == "layer4":
            x = self.layer4(x)
        return x


class InferenceEncoder(nn.Module):
    """RGB frames in [0, 1] (N×3×H×W) → L2-normalised stride-8 features (N×D×⌈H/8⌉×⌈W/8⌉).

    With a second backbone (the official MoCo-v1 ResNet-50 fusion), each trunk's features are
    normalised, the HVC half is weighted by `fusion_weight`, and the concatenation is normalised
    again, as in the official `infer_vos.py`.
    """

    def __init__(
        self,
        backbone: StrideEightResNet,
        normalization: Normalization = Normalization(),
        fusion: StrideEightResNet | None = None,
        fusion_weight: float = MOCO_FUSION_WEIGHT,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.fusion = fusion
        self.fusion_weight = fusion_weight
        self.normalization = normalization
        self.register_buffer(
            "mean", torch.tensor(normalization.mean).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(normalization.std).view(1, 3, 1, 1), persistent=False
        )

    @property
    def feature_dim(self) -> int:
        fused = self.fusion.feature_dim if self.fusion is not None else 0
        return self.backbone.feature_dim + fused

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = (rgb - self.mean) / self.std
        features = F.normalize(self.backbone(x), dim=1)
        if self.fusion is None:
            return features
        second = F.normalize(self.fusion(x), dim=1)
        return F.normalize(torch.cat([self.fusion_weight * features, second], dim=1), dim=1)


def feature_size(height: int, width: int) -> tuple[int, int]:
    """The feature grid of a stride-8 trunk: three ceil-halvings (conv1, maxpool, layer2)."""

    def halve(n: int) -> int:
        return (n + 1) // 2

    return halve(halve(halve(height))), halve(halve(halve(width)))
