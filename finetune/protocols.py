"""Named training protocols: explicit, recorded presets under which every field can be overridden.

The paper and the two public codes train differently and their numbers are not comparable;
a run names the one it follows (``protocol: tllib``) and its resolved config records every
value the preset filled in. ``custom`` fills in nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from finetune.registry import Registry


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    values: Mapping[str, Any]


PROTOCOLS: Registry[Protocol] = Registry("protocol", "protocol")


def register_protocol(protocol: Protocol) -> Protocol:
    return PROTOCOLS.add(protocol.name, protocol, protocol.description)


# what all three share: 224 px crops from 256 px squares, batch 48, the head at 10x the
# backbone's learning rate, 500-iteration epochs with one x0.1 step at epoch 12; and fp32, as all
# three references train (the project's own `auto` trains in bf16 autocast on a GPU)
_SHARED_DATA = {"image_size": 224, "resize_size": 256, "batch_size": 48, "train_transform": "random_resized_crop"}
_SHARED_OPTIM = {
    "lr": 0.01,
    "backbone_lr_ratio": 0.1,
    "steps_per_epoch": 500,
    "lr_decay_epochs": [12],
    "lr_decay_factor": 0.1,
}
_SHARED_ROOT = {"precision": "fp32"}
# images are decoded once into 256 x 256 squares (finetune.image_cache), aspect ratio not kept; every
# crop and evaluation view is taken from that square
_SQUARE = "images decoded once to 256 x 256 squares (aspect ratio not kept)"


def _preset(name: str, description: str, data: dict[str, Any], optim: dict[str, Any], **sections: Any) -> Protocol:
    values = {**_SHARED_ROOT, "data": {**_SHARED_DATA, **data}, "optim": {**_SHARED_OPTIM, **optim}, **sections}
    return register_protocol(Protocol(name, description, values))


register_protocol(Protocol("custom", "no preset: the config's own values", {}))
_preset(
    "paper",
    "NeurIPS 2019 paper (Sec. 5): SGD momentum 0.95, batch 48, head lr 10x backbone, fp32, trains on the whole "
    "sampled subset and reports the last epoch; where the paper is silent the preset fills in: the "
    "'progressive' schedule as the official code's (18 x 500 iterations, lr x0.1 at epoch 12 = iteration 6,000), "
    "head lr 0.01 for every dataset (the paper: 0.01 or 0.001 per task), "
    f"RandomResizedCrop 224 (scale 0.08-1) + flip from {_SQUARE}, centre-crop evaluation",
    data={"crop_scale_min": 0.08, "eval_transform": "center", "selection": "last"},
    optim={"momentum": 0.95, "nesterov": False, "weight_decay": 0.0, "epochs": 18},
)
_preset(
    "official-code",
    "thuml/Batch-Spectral-Shrinkage: momentum 0.9, weight decay 5e-4, 9000 iterations (18 x 500), lr x0.1 at "
    "iteration 6000, head lr 0.01, head N(0, 0.01), fp32, square resize 256 + RandomResizedCrop 224 + flip, "
    "ten-crop evaluation; trains on the whole sampled subset and reports the last iteration",
    data={"crop_scale_min": 0.08, "eval_transform": "ten_crop", "selection": "last"},
    optim={"momentum": 0.9, "nesterov": False, "weight_decay": 0.0, "epochs": 18},
    # its SGD weight decay 5e-4 on all weights is the L2 term (alpha/2)||w||^2, applied once: each
    # term maps the protocol's numbers to its own coefficients (Method.protocol_coefficients)
)
_preset(
    "tllib",
    "Transfer-Learning-Library: Nesterov momentum 0.9, 20 x 500 iterations, lr x0.1 at epoch 12, head nn.Linear's "
    "default init, fp32, RandomResizedCrop 224 (scale 0.2-1) + flip and Resize 256 + centre-crop evaluation, but "
    f"from {_SQUARE} where tllib crops the original image and resizes its short side; selection on a "
    "validation split (tllib picks the best epoch on test)",
    data={"crop_scale_min": 0.2, "eval_transform": "center", "selection": "best_val"},
    optim={"momentum": 0.9, "nesterov": True, "weight_decay": 0.0, "epochs": 20},
    model={"head_init": "default"},
    # tllib's coefficients on tllib's scale, per term (Method.protocol_coefficients): L2 alpha 5e-4 (its
    # bss.py's weight decay), L2-SP and DELTA alpha = beta = 0.01; DELTA summed over the batch
    delta={"batch_reduction": "sum"},
)
