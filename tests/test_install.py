"""Installing the project keeps a user's torch and Ray: pip's own resolution, asked offline against
an environment that holds a supported CUDA build of torch and an older Ray (as a GPU image or a
Ray cluster's nodes do), installs the project and nothing in their place.

The environment holds only the packages' metadata (``*.dist-info``), which is all pip's resolver
reads; ``--no-index`` means a resolution that wanted another torch could only fail, so the test
needs no download. The same environment with a torch outside the range fails to resolve: the test
can fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

# what a GPU image of 2026 holds (AWS's LLM image: torch 2.11 with its own CUDA; KubeRay's samples: Ray 2.52)
IMAGE = {"torch": "2.11.0+cu130", "torchvision": "0.26.0+cu130", "ray": "2.52.1"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from this checkout (offline where this environment's setuptools
    can build it; else in pip's isolated build environment, from the package registry)."""
    from importlib.metadata import version

    from compat.versions import release

    out = tmp_path_factory.mktemp("wheel")
    isolation = [] if release(version("setuptools")) < (77,) else ["--no-build-isolation"]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = out.glob("bss_study-*.whl")
    return found


def requirements(wheel: Path, extras: tuple[str, ...]) -> dict[str, str]:
    """Each requirement's name -> its version specifier, of the base install and ``extras``."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    found: dict[str, str] = {}
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        requirement, _, marker = line.removeprefix("Requires-Dist:").strip().partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if extra and extra.group(1) not in extras:
            continue
        name, spec = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*\(?([^)]*)\)?", requirement).groups()  # type: ignore[union-attr]
        found[name.lower().replace("_", "-")] = ",".join(filter(None, (found.get(name.lower()), spec.strip())))
    return found


def floor(spec: str) -> str:
    """A version that satisfies ``spec`` (its ``>=`` bound, else 1.0)."""
    match = re.search(r">=\s*([0-9][0-9.]*)", spec)
    return match.group(1) if match else "1.0"


def environment(tmp_path: Path, installed: dict[str, str]) -> Path:
    """A virtual environment without pip whose site-packages holds the metadata of ``installed``."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    for name, version in installed.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("test\n")
        (info / "RECORD").write_text("")
    return venv / "bin" / "python"


def resolve(python: Path, wheel: Path, extras: str, report: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # this machine's pip settings (a cap on torch, extra indexes) left out
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run", "--no-index",
         "--find-links", str(wheel.parent), "--report", str(report), f"bss-study[{extras}]"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("extras", ["postgres", "cluster,postgres,dashboard"])
def test_installing_keeps_the_images_torch_and_ray(wheel: Path, tmp_path: Path, extras: str) -> None:
    wanted = requirements(wheel, tuple(extras.split(",")))
    installed = {name: floor(spec) for name, spec in wanted.items()} | IMAGE
    report = tmp_path / "report.json"
    done = resolve(environment(tmp_path, installed), wheel, extras, report)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    to_install = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert to_install == ["bss-study"]  # torch 2.11+cu130 and Ray 2.52 kept, nothing replaced


def test_a_torch_outside_the_range_would_be_replaced(wheel: Path, tmp_path: Path) -> None:
    """The control: with torch 2.3 installed the project cannot resolve without another torch."""
    wanted = requirements(wheel, ("postgres",))
    installed = {name: floor(spec) for name, spec in wanted.items()} | IMAGE | {"torch": "2.3.1+cu121"}
    done = resolve(environment(tmp_path, installed), wheel, "postgres", tmp_path / "report.json")
    assert done.returncode != 0 and "torch" in done.stderr


def test_make_setup_without_a_torch_spec_installs_no_torch(tmp_path: Path) -> None:
    """``make setup TORCH_SPEC=`` (README: keep a CUDA build of your own) asks pip for no torch."""
    planned = subprocess.run(
        ["make", "-n", "-B", "setup", "TORCH_SPEC=", f"VENV={tmp_path / 'v'}"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    assert "pip install" in planned.stdout and "torch==" not in planned.stdout
    pinned = subprocess.run(["make", "-n", "-B", "setup", f"VENV={tmp_path / 'v'}"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert "torch==" in pinned.stdout
