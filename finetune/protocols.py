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
# backbone's learning rate, 500-iteration epochs with one x0.1 step at epoch 12
_SHARED_DATA = {"image_size": 224, "resize_size": 256, "batch_size": 48, "train_transform": "random_resized_crop"}
_SHARED_OPTIM = {
    "lr": 0.01,
    "backbone_lr_ratio": 0.1,
    "steps_per_epoch": 500,
    "lr_decay_epochs": [12],
    "lr_decay_factor": 0.1,
}


def _preset(name: str, description: str, data: dict[str, Any], optim: dict[str, Any], **sections: Any) -> Protocol:
    values = {"data": {**_SHARED_DATA, **data}, "optim": {**_SHARED_OPTIM, **optim}, **sections}
    return register_protocol(Protocol(name, description, values))


register_protocol(Protocol("custom", "no preset: the config's own values", {}))
_preset(
    "paper",
    "NeurIPS 2019 paper: SGD momentum 0.95, batch 48, head lr 10x backbone, step schedule (x0.1 at 2/3)",
    data={"crop_scale_min": 0.08, "eval_transform": "center"},
    optim={"momentum": 0.95, "nesterov": False, "weight_decay": 0.0, "epochs": 18},
)
_preset(
    "official-code",
    "thuml/Batch-Spectral-Shrinkage: momentum 0.9, weight decay 5e-4, 9000 iterations, lr x0.1 every 6000, "
    "square resize 256 + RandomResizedCrop 224 + flip, ten-crop evaluation",
    data={"crop_scale_min": 0.08, "eval_transform": "ten_crop"},
    optim={"momentum": 0.9, "nesterov": False, "weight_decay": 0.0, "epochs": 18},
    # its SGD weight decay 5e-4 on all weights is the L2 term (alpha/2)||w||^2, applied once: each
    # term maps the protocol's numbers to its own coefficients (Method.protocol_coefficients)
)
_preset(
    "tllib",
    "Transfer-Learning-Library: Nesterov momentum 0.9, 20 x 500 iterations, lr x0.1 at epoch 12, "
    "RandomResizedCrop scale 0.2-1 + flip, Resize 256 + centre crop evaluation (selection on validation, not test)",
    data={"crop_scale_min": 0.2, "eval_transform": "center"},
    optim={"momentum": 0.9, "nesterov": True, "weight_decay": 0.0, "epochs": 20},
    # tllib's coefficients on tllib's scale, per term (Method.protocol_coefficients): L2 alpha 5e-4 (its
    # bss.py's weight decay), L2-SP and DELTA alpha = beta = 0.01; DELTA summed over the batch
    delta={"batch_reduction": "sum"},
)
