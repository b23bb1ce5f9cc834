"""Each dataset read from a generated folder in its native layout; bad folders fail with the path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from finetune import ConfigError, DataError
from finetune.config import DataConfig
from finetune.data import DATASETS, carve_validation, load_splits, split_sizes
from tests.dataset_layouts import CLASSES, LAYOUTS, TEST_PER_CLASS, TRAIN_PER_CLASS, image


def data_config(name: str, root: Path, **extra: object) -> DataConfig:
    return DataConfig(dataset=name, root=str(root), sampling_rate=1.0, image_size=16, val_fraction=0.25, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_native_layout_loads(name: str, tmp_path: Path) -> None:
    root = LAYOUTS[name](tmp_path / name)
    splits = load_splits(data_config(name, root), seed=0)
    assert len(splits.classes) == len(CLASSES)
    assert len(splits.train) + len(splits.val) == TRAIN_PER_CLASS * len(CLASSES)
    assert len(splits.val) == len(CLASSES)  # 25% of 4 per class, carved from the sampled subset
    assert len(splits.test) == TEST_PER_CLASS * len(CLASSES)
    train_images = splits.train.all_images()
    assert train_images.shape[1:] == (3, 16, 16) and train_images.dtype == torch.uint8
    for split in (splits.train, splits.val, splits.test):
        assert sorted(set(split.labels.tolist())) == [0, 1, 2]
    # images of class c were generated with brightness depending on c: labels follow files
    test_images = splits.test.all_images()
    means = [float(test_images[splits.test.labels == c].float().mean()) for c in range(3)]
    assert means[0] < means[1] < means[2]


def test_every_registered_dataset_has_a_layout_test() -> None:
    assert set(DATASETS) - {"embedded-fashion-mnist", *IDX_DATASETS} == set(LAYOUTS)


IDX_DATASETS = ("mnist", "fashion-mnist")  # fixed ten classes: tested on IDX files below


def write_idx(path: Path, array: np.ndarray) -> Path:
    """MNIST's IDX format: 0, 0, type 0x08 (unsigned byte), rank; big-endian sizes; the bytes."""
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("name", IDX_DATASETS)
def test_idx_datasets_read_the_four_files_plain_or_gzipped(name: str, tmp_path: Path) -> None:
    from finetune.data import _embedded_arrays

    a = _embedded_arrays()
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", a["train_x"][:40])
    write_idx(tmp_path / "train-labels-idx1-ubyte", a["train_y"][:40].astype(np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", a["test_x"][:20])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", a["test_y"][:20].astype(np.uint8))
    config = DataConfig(dataset=name, root=str(tmp_path), sampling_rate=1.0, image_size=28, selection="last")
    splits = load_splits(config, seed=0)
    assert len(splits.classes) == 10 and splits.val is None and len(splits.test) == 20
    test = splits.test.all_images()
    assert test.shape == (20, 3, 28, 28) and torch.equal(test[:, 0], torch.from_numpy(a["test_x"][:20]))
    assert torch.equal(splits.test.labels, torch.from_numpy(a["test_y"][:20]))
    assert split_sizes(config, seed=0).train == len(splits.train) == 40

    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"^data.root: no t10k-labels-idx1-ubyte\[\.gz\] in "):
        load_splits(config, seed=0)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", a["test_y"][:19].astype(np.uint8))  # one label short
    with pytest.raises(DataError, match=r"^data\.root: the test IDX files of .* are not n images with n labels"):
        load_splits(config, seed=0)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is not an IDX file"):
        load_splits(config, seed=0)


def test_sampling_applies_to_file_datasets(tmp_path: Path) -> None:
    root = LAYOUTS["imagefolder"](tmp_path / "f")
    splits = load_splits(DataConfig(dataset="imagefolder", root=str(root), sampling_rate=0.5, val_fraction=0.5), 0)
    assert len(splits.train) + len(splits.val) == 2 * len(CLASSES)


def test_missing_root_and_no_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"no folder at {tmp_path / 'absent'}"):
        load_splits(data_config("cub200", tmp_path / "absent"), 0)
    with pytest.raises(ConfigError, match=r"data\.root: cub200 needs data\.root"):
        load_splits(DataConfig(dataset="cub200"), 0)


@pytest.mark.parametrize(
    ("name", "remove"),
    [
        ("cub200", "CUB_200_2011/train_test_split.txt"),
        ("stanford-dogs", "test_list.mat"),
        ("mit-indoor67", "TrainImages.txt"),
        ("oxford-pets", "oxford-iiit-pet/annotations"),
        ("fgvc-aircraft", "fgvc-aircraft-2013b/data/images_variant_trainval.txt"),
        ("stanford-cars", "stanford_cars/cars_test_annos_withlabels.mat"),
    ],
)
def test_missing_list_file_names_the_path(name: str, remove: str, tmp_path: Path) -> None:
    import shutil

    root = LAYOUTS[name](tmp_path / name)
    target = root / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DataError, match=r"data\.root") as info:
        load_splits(data_config(name, root), 0)
    assert str(root) in str(info.value)


def test_empty_class_folder(tmp_path: Path) -> None:
    root = LAYOUTS["imagefolder"](tmp_path / "f")
    (root / "train" / "zeta").mkdir()
    with pytest.raises(DataError, match=r"empty class folder .*zeta"):
        load_splits(data_config("imagefolder", root), 0)


def test_missing_listed_image(tmp_path: Path) -> None:
    root = LAYOUTS["mit-indoor67"](tmp_path / "m")
    (root / "Images" / "beta" / "img_1.jpg").unlink()
    with pytest.raises(DataError, match=r"missing, e\.g\. .*img_1\.jpg"):
        load_splits(data_config("mit-indoor67", root), 0)


def test_corrupt_image_fails_fast_or_is_skipped_and_counted(tmp_path: Path) -> None:
    root = LAYOUTS["imagefolder"](tmp_path / "f")
    bad = root / "train" / "beta" / "2.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*beta/2\.jpg"):
        load_splits(data_config("imagefolder", root), 0)
    with pytest.warns(UserWarning, match="skipped 1 unreadable train image"):
        splits = load_splits(data_config("imagefolder", root, skip_bad_images=True), 0)
    assert len(splits.train) + len(splits.val) == TRAIN_PER_CLASS * len(CLASSES) - 1


def test_carve_validation_is_per_class_and_seeded() -> None:
    labels = np.repeat(np.arange(3), [10, 5, 1])
    train, val = carve_validation(labels, 0.2, seed=0)
    assert set(train) | set(val) == set(range(16)) and not set(train) & set(val)
    assert [int((labels[val] == c).sum()) for c in range(3)] == [2, 1, 0]
    again = carve_validation(labels, 0.2, seed=0)
    assert np.array_equal(val, again[1])


def test_image_helper_makes_files(tmp_path: Path) -> None:
    assert image(tmp_path / "x.png", 1).is_file()


def _distinct_imagefolder(root: Path, per_class: int) -> Path:
    """An ImageFolder whose every image is different (pixel content identifies the file)."""
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            image(root / "train" / name / f"{i}.png", 1000 * c + i + 1)
        image(root / "test" / name / "0.png", 99_000 + c)
    return root


def _image_keys(images: torch.Tensor) -> set[bytes]:
    return {bytes(x.numpy().tobytes()) for x in images}


def test_grid_selection_trains_on_exactly_the_papers_nested_subsets(tmp_path: Path) -> None:
    """``selection: last``: no validation carved from the sample, ceil(rate x n_c) training images a
    class, each rate's set inside the next; ``best_val`` carves validation out of the same sample."""
    root = _distinct_imagefolder(tmp_path / "f", per_class=20)
    previous: set[bytes] = set()
    for rate, per_class in ((0.15, 3), (0.3, 6), (0.5, 10), (1.0, 20)):
        config = DataConfig(dataset="imagefolder", root=str(root), sampling_rate=rate, image_size=16, selection="last")
        splits = load_splits(config, seed=3)
        assert splits.val is None and splits.sizes == split_sizes(config, 3)
        assert len(splits.train) == per_class * len(CLASSES)
        assert np.bincount(splits.train.labels.numpy()).tolist() == [per_class] * len(CLASSES)
        keys = _image_keys(splits.train.all_images())
        assert len(keys) == len(splits.train) and previous < keys  # nested: 15% inside 30% inside 50%
        previous = keys
        searched = load_splits(DataConfig(**{**config.__dict__, "selection": "best_val"}), seed=3)
        assert searched.val is not None and len(searched.train) < len(splits.train)
        assert len(searched.train) + len(searched.val) == len(splits.train)  # validation comes out of the sample


def test_unknown_selection_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"data\.selection: must be one of best_val, last"):
        DataConfig(selection="best_test")
