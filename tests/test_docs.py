"""The documentation site builds strictly (what `make docs` runs, and so CI): a broken link or a page
missing from the nav fails it, shown on a copy with one of each."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

MKDOCS = str(Path(sys.executable).parent / "mkdocs")


def build(root: Path) -> subprocess.CompletedProcess[str]:
    (root / "docs" / "index.md").write_text((REPO / "README.md").read_text().replace("](docs/", "]("))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [MKDOCS, "build", "--strict", "-f", str(root / "mkdocs.yml"), "-d", str(root / "site")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


@pytest.fixture()
def site_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    return tmp_path


def test_the_site_builds_strictly(site_copy: Path) -> None:
    done = build(site_copy)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (site_copy / "site" / "architecture" / "index.html").is_file()


def test_a_broken_link_fails_the_build(site_copy: Path) -> None:
    page = site_copy / "docs" / "commands.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    done = build(site_copy)
    assert done.returncode != 0 and "no-such-page.md" in done.stderr


def test_a_page_left_out_of_the_nav_fails_the_build(site_copy: Path) -> None:
    (site_copy / "docs" / "orphan.md").write_text("# Orphan\n")
    done = build(site_copy)
    assert done.returncode != 0 and "orphan.md" in done.stderr


def test_the_readme_is_a_front_page() -> None:
    """About 250 lines at most: what it is, the two commands, the three uses, the map of the docs."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for heading in ("## Two commands", "## A sweep on your cluster", "## Watching it in MLflow",
                    "## Exporting and running the best configurations again", "## The documentation"):  # fmt: skip
        assert heading in readme
