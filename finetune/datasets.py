"""File-based datasets, each read from its native on-disk layout as distributed.

Every loader returns :class:`finetune.data.DatasetSources`: labels first (so sampling
decides which images are decoded at all), then a decoder that opens, converts to RGB and
resizes only the chosen files. A missing folder or list file, an empty class or a corrupt
image is a :class:`DataError` naming the path; ``data.skip_bad_images`` skips unreadable
images instead (checked up front, counted in the warning).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from compat import for_torch
from finetune.config import DataConfig
from finetune.dataset_registry import DatasetSources, Source, register_dataset
from finetune.errors import ConfigError, DataError
from finetune.image_cache import cached_split, default_image_cache, split_key

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def decode_file(path: Path, size: int) -> torch.Tensor:
    """One image file -> uint8 (3, size, size), square-resized with antialiasing."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(
            f"data.root: cannot read image {path} ({exc}); fix or remove it, or set data.skip_bad_images: true"
        ) from None
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return False


def file_source(paths: Sequence[Path], labels: Sequence[int], config: DataConfig, split: str) -> Source:
    """A source over image files; missing files fail now, unreadable ones when decoded (or are skipped)."""
    paths, labels = list(paths), list(labels)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"data.root: {len(missing)} listed {split} image(s) missing, e.g. {missing[0]}; check data.root"
        )
    if config.skip_bad_images:
        keep = [i for i, p in enumerate(paths) if _readable(p)]
        if len(keep) < len(paths):
            warnings.warn(f"skipped {len(paths) - len(keep)} unreadable {split} image(s) of {len(paths)}", stacklevel=2)
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    label_array = np.asarray(labels, dtype=np.int64)

    def decode(indices: np.ndarray, size: int) -> torch.Tensor:
        if len(indices) == 0:
            return torch.empty((0, 3, size, size), dtype=torch.uint8)
        return torch.stack([decode_file(paths[int(i)], size) for i in indices])

    def storage(size: int) -> np.ndarray:
        cache = Path(config.cache_dir) if config.cache_dir else default_image_cache()
        key = split_key(config.dataset, split, size, paths)
        array, _ = cached_split(cache, key, len(paths), size, lambda i: decode_file(paths[i], size))
        return array

    return Source(label_array, decode, storage if config.decode_cache and paths else None)


def require_root(config: DataConfig) -> Path:
    if config.root is None:
        raise ConfigError(f"data.root: {config.dataset} needs data.root, the folder it was extracted into")
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root: no folder at {root}; point it at the extracted {config.dataset} dataset")
    return root


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"data.root: missing {what} {path}; is data.root the dataset's top folder?")
    return path


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _check_classes(labels: Sequence[int], classes: Sequence[str], where: Path) -> None:
    present = set(labels)
    empty = [c for i, c in enumerate(classes) if i not in present]
    if empty:
        raise DataError(f"data.root: class {empty[0]!r} has no training images in {where}; remove it or add images")


# --- generic ImageFolder: root/{train,val?,test}/<class>/<image> ------------------------------


def _scan_folder(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for index, name in enumerate(classes):
        files = (
            sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if (folder / name).is_dir()
            else []
        )
        if not files and folder.name == "train":
            raise DataError(f"data.root: empty class folder {folder / name}; remove it or add images")
        paths += files
        labels += [index] * len(files)
    return paths, labels


@register_dataset("imagefolder", "any folder of train/<class>/*.jpg and test/<class>/*.jpg")
def load_imagefolder(config: DataConfig) -> DatasetSources:
    root = require_root(config)
    train_dir = root / "train"
    if not train_dir.is_dir() or not (root / "test").is_dir():
        raise DataError(f"data.root: {root} needs train/ and test/ folders with one sub-folder per class")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"data.root: no class folders in {train_dir}")
    sources = {}
    for split in ("train", "val", "test"):
        if (root / split).is_dir():
            sources[split] = file_source(*_scan_folder(root / split, classes), config, split)
    return DatasetSources(sources["train"], sources.get("val"), sources["test"], tuple(classes))


# --- CUB-200-2011: images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/ ----------


@register_dataset("cub200", "CUB-200-2011 (200 bird species)")
def load_cub200(config: DataConfig) -> DatasetSources:
    root = require_root(config)
    if (root / "CUB_200_2011").is_dir():
        root = root / "CUB_200_2011"
    images = dict(line.split(maxsplit=1) for line in _read_lines(require_file(root / "images.txt", "list file")))
    labels = dict(line.split() for line in _read_lines(require_file(root / "image_class_labels.txt", "list file")))
    split = dict(line.split() for line in _read_lines(require_file(root / "train_test_split.txt", "list file")))
    class_lines = _read_lines(require_file(root / "classes.txt", "list file"))
    classes = [line.split(maxsplit=1)[1] for line in class_lines]
    parts: dict[str, tuple[list[Path], list[int]]] = {"1": ([], []), "0": ([], [])}
    for image_id, relative in images.items():
        paths, ys = parts[split[image_id]]
        paths.append(root / "images" / relative)
        ys.append(int(labels[image_id]) - 1)
    _check_classes(parts["1"][1], classes, root)
    return DatasetSources(
        file_source(*parts["1"], config, "train"), None, file_source(*parts["0"], config, "test"), tuple(classes)
    )


# --- Stanford Dogs: train_list.mat / test_list.mat, Images/ --------------------------------------------


def _mat_string(value: object) -> str:
    """A MATLAB char array from a cell, however deeply loadmat wrapped it."""
    while isinstance(value, np.ndarray):
        value = value.ravel()[0]
    return str(value)


def _dogs_list(path: Path, root: Path) -> tuple[list[Path], list[int]]:
    from scipy.io import loadmat

    mat = loadmat(require_file(path, "list file"))
    files = [_mat_string(f) for f in np.asarray(mat["file_list"]).ravel()]
    labels = [int(v) - 1 for v in np.asarray(mat["labels"]).ravel()]
    return [root / "Images" / f for f in files], labels


@register_dataset("stanford-dogs", "Stanford Dogs (120 breeds)")
def load_stanford_dogs(config: DataConfig) -> DatasetSources:
    root = require_root(config)
    train_paths, train_labels = _dogs_list(root / "train_list.mat", root)
    test_paths, test_labels = _dogs_list(root / "test_list.mat", root)
    folders: dict[int, str] = {}
    for path, label in zip(train_paths, train_labels, strict=True):
        folders.setdefault(label, path.parent.name)
    classes = [folders.get(i, f"class-{i}").split("-", 1)[-1] for i in range(max(train_labels) + 1)]
    _check_classes(train_labels, classes, root)
    return DatasetSources(
        file_source(train_paths, train_labels, config, "train"),
        None,
        file_source(test_paths, test_labels, config, "test"),
        tuple(classes),
    )


# --- MIT Indoor 67: Images/<class>/..., TrainImages.txt, TestImages.txt --------------------------------


@register_dataset("mit-indoor67", "MIT Indoor-67 scenes")
def load_mit_indoor(config: DataConfig) -> DatasetSources:
    root = require_root(config)
    train_list = _read_lines(require_file(root / "TrainImages.txt", "list file"))
    test_list = _read_lines(require_file(root / "TestImages.txt", "list file"))
    classes = sorted({line.split("/")[0] for line in train_list})
    index = {c: i for i, c in enumerate(classes)}

    def source(lines: list[str], split: str) -> Source:
        unknown = [line for line in lines if line.split("/")[0] not in index]
        if unknown:
            raise DataError(f"data.root: {split} image {unknown[0]} is of a class with no training images")
        return file_source(
            [root / "Images" / line for line in lines], [index[line.split("/")[0]] for line in lines], config, split
        )

    return DatasetSources(source(train_list, "train"), None, source(test_list, "test"), tuple(classes))


# --- torchvision's own classes, offline (download=False), for their native layouts ---------------------

Samples = list[tuple[Path, int]]


def _torchvision_sources(
    config: DataConfig,
    layout: str,
    make: Callable[[Path, str], Any],
    splits: tuple[str, str],
    samples: Callable[[Any], Samples],
) -> DatasetSources:
    """Build (train, test) sources from a torchvision dataset class's file lists (no decoding there)."""
    root = require_root(config)
    parts = []
    for split in splits:
        try:
            parts.append(make(root, split))
        except (RuntimeError, FileNotFoundError, OSError) as exc:
            raise DataError(f"data.root: {root} is not a {layout} folder ({str(exc).splitlines()[0]})") from None
    train, test = (
        file_source([path for path, _ in samples(part)], [label for _, label in samples(part)], config, name)
        for part, name in zip(parts, ("train", "test"), strict=True)
    )
    return DatasetSources(train, None, test, tuple(parts[0].classes))


@register_dataset("oxford-pets", "Oxford-IIIT Pets (37 breeds)")
def load_oxford_pets(config: DataConfig) -> DatasetSources:
    from torchvision.datasets import OxfordIIITPet

    return _torchvision_sources(
        config,
        "Oxford-IIIT Pet (oxford-iiit-pet/images, oxford-iiit-pet/annotations)",
        lambda root, split: OxfordIIITPet(root, split=split, download=False),
        ("trainval", "test"),
        for_torch.torchvision_file_list,
    )


@register_dataset("fgvc-aircraft", "FGVC-Aircraft (100 variants)")
def load_fgvc_aircraft(config: DataConfig) -> DatasetSources:
    from torchvision.datasets import FGVCAircraft

    return _torchvision_sources(
        config,
        "FGVC Aircraft (fgvc-aircraft-2013b/data)",
        lambda root, split: FGVCAircraft(root, split=split, annotation_level="variant", download=False),
        ("trainval", "test"),
        for_torch.torchvision_file_list,
    )


@register_dataset("stanford-cars", "Stanford Cars (196 models)")
def load_stanford_cars(config: DataConfig) -> DatasetSources:
    from torchvision.datasets import StanfordCars

    return _torchvision_sources(
        config,
        "Stanford Cars (stanford_cars/devkit, cars_train, cars_test, cars_test_annos_withlabels.mat)",
        lambda root, split: StanfordCars(root, split=split, download=False),
        ("train", "test"),
        for_torch.torchvision_file_list,
    )


IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_TYPES = {0x08: np.uint8}  # the IDX type code of unsigned bytes (all MNIST-style files)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format: a 4-byte magic of type code and rank, big-endian sizes, data),
    plain or gzipped; a file of another shape is a DataError naming it."""
    import gzip

    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in IDX_TYPES:
        raise DataError(f"data.root: {path} is not an IDX file of unsigned bytes (MNIST's format)")
    rank = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    start = 4 + 4 * rank
    if len(raw) - start != int(np.prod(shape)):
        raise DataError(f"data.root: {path} holds {len(raw) - start} bytes of data, its header says {shape}")
    return np.frombuffer(raw, dtype=IDX_TYPES[raw[2]], offset=start).reshape(shape)


def _idx_file(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"data.root: no {name}[.gz] in {root}; point data.root at the folder of the four IDX files "
        "(torchvision keeps them in <root>/MNIST/raw)"
    )


def _idx_sources(config: DataConfig, classes: tuple[str, ...]) -> DatasetSources:
    from finetune.data import array_source

    root = require_root(config)
    sources = []
    for split, (images_name, labels_name) in IDX_FILES.items():
        images, labels = read_idx(_idx_file(root, images_name)), read_idx(_idx_file(root, labels_name))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"data.root: the {split} IDX files of {root} are not n images with n labels")
        if labels.max(initial=0) >= len(classes):
            raise DataError(
                f"data.root: a {split} label in {root} is {labels.max()}; {config.dataset} has {len(classes)} classes"
            )
        sources.append(array_source(images, labels.astype(np.int64)))
    return DatasetSources(sources[0], None, sources[1], classes)


@register_dataset("mnist", "MNIST from its four IDX files in data.root (60,000 training, 10,000 test digits)")
def load_mnist(config: DataConfig) -> DatasetSources:
    return _idx_sources(config, tuple(str(d) for d in range(10)))


FASHION_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)


@register_dataset("fashion-mnist", "Fashion-MNIST from its four IDX files in data.root (60,000 training, 10,000 test)")
def load_fashion_mnist(config: DataConfig) -> DatasetSources:
    return _idx_sources(config, FASHION_CLASSES)
