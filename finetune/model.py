"""The classifier a run fine-tunes: a pretrained backbone giving pooled features, plus a new head."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """``backbone`` maps images (b, 3, h, w) to pooled features (b, d); ``head`` is new.

    ``forward`` returns ``(logits, features)`` so that feature-based regularisers (BSS)
    see exactly the features the head sees, in the same mode.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.head.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(images)
        return self.head(features), features
