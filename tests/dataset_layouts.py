"""Small generated folders laid out exactly like each dataset's native distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    array = (rng.random((14, 18, 3)) * 60 + value * 40 % 200).astype(np.uint8)
    Image.fromarray(array).save(path)
    return path


CLASSES = ("alpha", "beta", "gamma")
TRAIN_PER_CLASS, TEST_PER_CLASS = 4, 2


def imagefolder(root: Path) -> Path:
    for split, n in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for c, name in enumerate(CLASSES):
            for i in range(n):
                image(root / split / name / f"{i}.jpg", c)
    return root


def cub200(root: Path) -> Path:
    base = root / "CUB_200_2011"
    lines: dict[str, list[str]] = {"images": [], "labels": [], "split": []}
    image_id = 0
    for c, name in enumerate(CLASSES):
        folder = f"{c + 1:03d}.{name}"
        for i in range(TRAIN_PER_CLASS + TEST_PER_CLASS):
            image_id += 1
            relative = f"{folder}/{name}_{i}.jpg"
            image(base / "images" / relative, c)
            lines["images"].append(f"{image_id} {relative}")
            lines["labels"].append(f"{image_id} {c + 1}")
            lines["split"].append(f"{image_id} {int(i < TRAIN_PER_CLASS)}")
    (base / "images.txt").write_text("\n".join(lines["images"]) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(lines["labels"]) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(lines["split"]) + "\n")
    (base / "classes.txt").write_text("".join(f"{c + 1} {c + 1:03d}.{n}\n" for c, n in enumerate(CLASSES)))
    return root


def stanford_dogs(root: Path) -> Path:
    from scipy.io import savemat

    for split, n, offset in (("train", TRAIN_PER_CLASS, 0), ("test", TEST_PER_CLASS, 100)):
        files, labels = [], []
        for c, name in enumerate(CLASSES):
            folder = f"n0208{c}-{name}"
            for i in range(n):
                relative = f"{folder}/n0208{c}_{offset + i}.jpg"
                image(root / "Images" / relative, c)
                files.append(relative)
                labels.append(c + 1)
        cell = np.empty((len(files), 1), dtype=object)
        for i, f in enumerate(files):
            cell[i, 0] = f
        savemat(root / f"{split}_list.mat", {"file_list": cell, "labels": np.array(labels, dtype=np.uint8)[:, None]})
    return root


def mit_indoor67(root: Path) -> Path:
    for split, n, offset in (("Train", TRAIN_PER_CLASS, 0), ("Test", TEST_PER_CLASS, 100)):
        lines = []
        for c, name in enumerate(CLASSES):
            for i in range(n):
                relative = f"{name}/img_{offset + i}.jpg"
                image(root / "Images" / relative, c)
                lines.append(relative)
        (root / f"{split}Images.txt").write_text("\n".join(lines) + "\n")
    return root


def oxford_pets(root: Path) -> Path:
    base = root / "oxford-iiit-pet"
    names = ("Abyssinian", "basset_hound", "Bengal")
    for split, n, offset in (("trainval", TRAIN_PER_CLASS, 0), ("test", TEST_PER_CLASS, 100)):
        lines = []
        for c, name in enumerate(names):
            for i in range(n):
                image(base / "images" / f"{name}_{offset + i}.jpg", c)
                lines.append(f"{name}_{offset + i} {c + 1} {1 + c % 2} 1")
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def fgvc_aircraft(root: Path) -> Path:
    data = root / "fgvc-aircraft-2013b" / "data"
    variants = ("707-320", "A300B4", "Cessna 172")
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    image_id = 1000000
    for split, n in (("trainval", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        lines = []
        for c, name in enumerate(variants):
            for _ in range(n):
                image_id += 1
                image(data / "images" / f"{image_id}.jpg", c)
                lines.append(f"{image_id} {name}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def stanford_cars(root: Path) -> Path:
    from scipy.io import savemat

    base = root / "stanford_cars"
    devkit = base / "devkit"
    devkit.mkdir(parents=True)
    names = np.array(["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "BMW M3 Coupe 2012"], dtype=object)
    savemat(devkit / "cars_meta.mat", {"class_names": names[None, :]})
    for split, n, mat in (
        ("train", TRAIN_PER_CLASS, devkit / "cars_train_annos.mat"),
        ("test", TEST_PER_CLASS, base / "cars_test_annos_withlabels.mat"),
    ):
        records = []
        for c in range(len(names)):
            for i in range(n):
                fname = f"{c:02d}{i:03d}.jpg"
                image(base / f"cars_{split}" / fname, c)
                records.append((fname, c + 1))
        annotations = np.zeros((1, len(records)), dtype=[("fname", "O"), ("class", "O")])
        for j, (fname, label) in enumerate(records):
            annotations[0, j] = (fname, np.array([[label]], dtype=np.uint8))
        savemat(mat, {"annotations": annotations})
    return root


LAYOUTS = {
    "imagefolder": imagefolder,
    "cub200": cub200,
    "stanford-dogs": stanford_dogs,
    "mit-indoor67": mit_indoor67,
    "oxford-pets": oxford_pets,
    "fgvc-aircraft": fgvc_aircraft,
    "stanford-cars": stanford_cars,
}
