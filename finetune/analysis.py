"""The paper's analyses of a finished run, as data (drawing lives in ``finetune.plots``).

- :func:`feature_spectrum`: singular values of batch feature matrices (Fig. 1c-d, 3b-c).
- :func:`corresponding_angles`: cos of the angles between corresponding left singular
  vectors of fine-tuned and pretrained conv weights, per layer (Eq. 5-6, Fig. 1b).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from finetune.backbones import backbone_spec, build_classifier
from finetune.config import ModelConfig, TrainConfig, load_config
from finetune.data import check_dataset_name, load_splits
from finetune.errors import ConfigError
from finetune.model import Classifier
from finetune.tasks import identity, task_views
from finetune.transforms import center_view

RUN_CONFIG = "config.yaml"
RUN_WEIGHTS = "best_model.pt"


@dataclass(frozen=True)
class FinishedRun:
    """A run folder holding ``config.yaml`` and ``best_model.pt`` (a study checkpoint or `study train --output`)."""

    folder: Path
    config: TrainConfig
    model: Classifier


def load_run(folder: str | Path) -> FinishedRun:
    """A finished run: a folder, or a trial's URI in an object store (``s3://...``: read through
    ``pyarrow.fs`` with the AWS environment's endpoint and credentials)."""
    if isinstance(folder, str) and "://" in folder:
        return _load_stored_run(folder)
    folder = Path(folder)
    for name in (RUN_CONFIG, RUN_WEIGHTS):
        if not (folder / name).is_file():
            raise ConfigError(
                f"--run: {folder} has no {name}; pass a trial checkpoint folder or a `study train --output` folder"
            )
    config = load_config(folder / RUN_CONFIG)
    check_dataset_name(config.data.dataset)
    return _finished(folder, config, torch.load(folder / RUN_WEIGHTS, map_location="cpu", weights_only=True))


def _finished(folder: Path, config: TrainConfig, state: dict[str, torch.Tensor]) -> FinishedRun:
    """The run's classifier built from its config and loaded with its selected weights."""
    model = build_classifier(
        _no_download(config), num_classes=int(state["head.weight"].shape[0]), image_size=config.data.image_size
    )
    model.load_state_dict(state)
    return FinishedRun(folder, config, model.eval())


def _load_stored_run(uri: str) -> FinishedRun:
    import io

    import pyarrow.fs as pafs

    from finetune.config import config_from_yaml

    uri = uri.rstrip("/")
    try:
        fs, prefix = pafs.FileSystem.from_uri(uri)
        found = {
            name: fs.get_file_info(f"{prefix}/{name}").type == pafs.FileType.File for name in (RUN_CONFIG, RUN_WEIGHTS)
        }
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--run: {uri} cannot be read ({str(exc).strip().splitlines()[0]}); "
            "check AWS_ENDPOINT_URL and the credentials"
        ) from None
    for name, there in found.items():
        if not there:
            raise ConfigError(f"--run: {uri} has no {name}; pass a trial's folder or its URI in the study's storage")
    with fs.open_input_file(f"{prefix}/{RUN_CONFIG}") as stream:
        config = config_from_yaml(bytes(stream.read()).decode("utf-8"), f"{uri}/{RUN_CONFIG}")
    check_dataset_name(config.data.dataset)
    with fs.open_input_file(f"{prefix}/{RUN_WEIGHTS}") as stream:
        state = torch.load(io.BytesIO(bytes(stream.read())), map_location="cpu", weights_only=True)
    return _finished(Path(uri), config, state)


def _no_download(config: TrainConfig) -> ModelConfig:
    """The run's architecture without fetching pretrained weights (the file overwrites them)."""
    return replace(config.model, weights=None)


@torch.no_grad()
def feature_spectrum(run: FinishedRun, batches: int = 8, seed: int = 0) -> np.ndarray:
    """Singular values (descending) of ``batches`` batch feature matrices of the training subset,
    in eval mode on non-augmented images (of a task sequence: the last task's, in its pixel order);
    shape (batches, min(batch_size, feature_dim))."""
    config = run.config
    splits = load_splits(config.data, config.seed)
    last_task = [identity, *task_views(config)][-1]
    images = center_view(last_task(splits.train.all_images()), config.data)[0]
    b = config.data.batch_size
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    spectra = []
    for i in range(min(batches, len(images) // b)):
        _, features = run.model(images[order[i * b : (i + 1) * b]])
        spectra.append(torch.linalg.svdvals(features.double()).numpy())
    if not spectra:
        raise ConfigError(f"data.batch_size: {b} exceeds the {len(images)} training images of this run")
    return np.stack(spectra)


def spectrum_table(named: dict[str, np.ndarray]) -> pa.Table:
    """Rows: run label, index (1 = largest), mean and std of the singular value over batches."""
    rows: dict[str, list] = {"run": [], "index": [], "sigma_mean": [], "sigma_std": []}
    for label, spectra in named.items():
        for i in range(spectra.shape[1]):
            rows["run"].append(label)
            rows["index"].append(i + 1)
            rows["sigma_mean"].append(float(spectra[:, i].mean()))
            rows["sigma_std"].append(float(spectra[:, i].std()))
    return pa.table(rows)


def unfold(weight: torch.Tensor) -> torch.Tensor:
    """(c_out, c_in, kh, kw) -> (c_out, c_in * kh * kw)."""
    return weight.reshape(weight.shape[0], -1)


def layer_angles(finetuned: torch.Tensor, pretrained: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """cos(theta_i) = |<u_1i, u_2i>| for corresponding left singular vectors; and sigma_i of W^0."""
    u1, _, _ = torch.linalg.svd(unfold(finetuned).double(), full_matrices=False)
    u0, s0, _ = torch.linalg.svd(unfold(pretrained).double(), full_matrices=False)
    return (u1 * u0).sum(0).abs().numpy(), s0.numpy()


def corresponding_angles(run: FinishedRun, layers: list[str] | None = None) -> pa.Table:
    """Per layer (default: the backbone's stage-end convs) and singular index: cos(theta) and sigma of W^0."""
    if run.config.model.weights is None:
        raise ConfigError("model.weights: the run started from random weights; angles need a pretrained start")
    pretrained = build_classifier(
        run.config.model, num_classes=run.model.head.out_features, image_size=run.config.data.image_size
    )
    names = layers or backbone_spec(run.config.model.backbone).stage_layers(run.model.backbone)
    rows: dict[str, list] = {"layer": [], "index": [], "cos": [], "sigma_pretrained": []}
    for name in names:
        w1, w0 = run.model.backbone.get_submodule(name), pretrained.backbone.get_submodule(name)
        if not isinstance(w1, nn.Conv2d) or not isinstance(w0, nn.Conv2d):
            raise ConfigError(f"--layers: {name} is not a convolution of {run.config.model.backbone}")
        cos, sigma = layer_angles(w1.weight.detach(), w0.weight.detach())
        rows["layer"] += [name] * len(cos)
        rows["index"] += list(range(1, len(cos) + 1))
        rows["cos"] += cos.tolist()
        rows["sigma_pretrained"] += sigma.tolist()
    return pa.table(rows)
