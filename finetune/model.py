"""The classifier a run fine-tunes: a pretrained backbone giving pooled features, plus a new head."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """``backbone`` maps images (b, 3, h, w) to pooled features (b, d); ``head`` is new.

    ``forward`` returns ``(logits, features)`` so that feature-based regularisers (BSS)
    see the batch's pooled features in the same mode. With ``tsvd_r`` > 0 the head sees
    the features without their ``tsvd_r`` smallest spectral components (training and
    evaluation alike); the returned features are the untouched ones. ``head_init``: ``normal``
    (N(0, 0.01) weights, zero bias: the official code) or ``default`` (``nn.Linear``'s own: tllib).
    """

    def __init__(
        self, backbone: nn.Module, feature_dim: int, num_classes: int, tsvd_r: int = 0, head_init: str = "normal"
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.tsvd_r = tsvd_r
        self.head = nn.Linear(feature_dim, num_classes)
        if head_init == "normal":
            nn.init.normal_(self.head.weight, 0.0, 0.01)
            nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(images)
        head_input = drop_smallest_components(features, self.tsvd_r) if self.tsvd_r else features
        return self.head(head_input), features


def drop_smallest_components(features: torch.Tensor, r: int) -> torch.Tensor:
    """TSVD (Eq. 10): the batch feature matrix (b, d) without its r smallest spectral components."""
    u, s, vh = torch.linalg.svd(features.float(), full_matrices=False)
    keep = max(0, s.shape[0] - r)
    return ((u[:, :keep] * s[:keep]) @ vh[:keep]).to(features.dtype)
