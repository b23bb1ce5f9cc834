"""A study folder is relocatable (every path comes from the folder a command is given) and a
damaged one gets a one-line answer; read-only commands change nothing."""

from __future__ import annotations

import hashlib
import shutil
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient

from study.cli import main
from tests.conftest import tiny_base
from tests.study.test_cli_imports import loaded_by
from tests.study.test_resume import launch_and_stop

pytestmark = pytest.mark.slow

TRIALS, EPOCHS = 2, 2


def spec_file(folder: Path, name: str) -> Path:
    spec = {
        "name": name,
        "output_dir": str(folder / name),
        "search_space": "demo",
        "num_samples": TRIALS,
        "max_concurrent": 2,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "base": tiny_base(optim={"epochs": EPOCHS, "steps_per_epoch": 3}),
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("finished")
    assert main(["launch", str(spec_file(folder, "fin"))]) == 0
    return folder / "fin"


def digest(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` and its content hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def settled(folder: Path, quiet_s: float = 4.0, limit_s: float = 20.0) -> None:
    """Wait until no file below ``folder`` has changed for ``quiet_s`` seconds."""
    deadline = time.monotonic() + limit_s
    last, since = digest(folder), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "the study folder kept changing after its driver was killed"
        time.sleep(0.5)
        now = digest(folder)
        if now != last:
            last, since = now, time.monotonic()


def copy_of(study: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(study, copy)
    return copy


def test_a_copied_finished_study_is_its_own(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = digest(finished)
    copy = copy_of(finished, tmp_path)
    assert main(["status", str(copy)]) == 0
    assert "2/2 trials ended" in capsys.readouterr().out
    assert main(["report", str(copy)]) == 0
    assert main(["export-best", str(copy)]) == 0
    exported = (copy / "export" / "best-1.yaml").read_text()
    assert f"# weights: {copy}/trials/" in exported
    # as a process: no Ray, MLflow, Optuna or torchvision (torch stays: each regulariser's config
    # section, which parsing a saved config needs, lives in the regulariser's module)
    code, loaded = loaded_by("export-best", str(copy), "--out", str(tmp_path / "light"))
    assert code == 0 and not {"ray", "mlflow", "optuna", "torchvision"} & set(loaded), loaded
    assert (tmp_path / "light" / "best-1.yaml").read_text() == exported
    assert digest(finished) == before  # the original, byte for byte
    client = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fin")
    assert experiment is not None and experiment.artifact_location == (copy / "mlartifacts").as_uri()
    assert any((copy / "mlartifacts").rglob("report.md"))
    assert not any((finished / "mlartifacts").rglob("report.md"))
    assert main(["ui", str(copy), "--print-only"]) == 0
    assert f"sqlite:///{copy}/mlflow.db" in capsys.readouterr().out


def test_a_copied_interrupted_study_resumes_in_the_copy(tmp_path: Path) -> None:
    original = tmp_path / "orig"
    original.mkdir()
    spec = spec_file(original, "moved")
    launch_and_stop(spec, original / "moved", signal.SIGKILL)
    study = original / "moved"
    settled(study)  # the killed driver's workers are ended by its watchdog within seconds
    copy = copy_of(study, tmp_path)
    before = digest(study)
    assert main(["resume", str(copy)]) == 0
    assert digest(study) == before  # nothing written into the original
    rows = pq.read_table(copy / "trials.parquet").to_pylist()
    assert len(rows) == TRIALS and all(r["status"] == "finished" and r["epoch"] == EPOCHS for r in rows)
    assert all((copy / r["trial_dir"] / "best_model.pt").is_file() for r in rows)
    client = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("moved")
    assert experiment is not None
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == TRIALS and all(c.info.status == "FINISHED" for c in children)


def one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: STUDY_DIR:"), err
    for needle in needles:
        assert needle in err, err
    return err


def test_a_truncated_table(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = copy_of(finished, tmp_path)
    table = copy / "trials.parquet"
    table.write_bytes(table.read_bytes()[:100])
    before = digest(copy)
    assert main(["status", str(copy)]) == 0
    assert "trials.parquet is damaged: `study resume" in capsys.readouterr().out
    for command in (["report", str(copy)], ["export-best", str(copy)]):
        assert main(command) == 2
        one_line_error(capsys, "trials.parquet is damaged", "study resume")
    assert digest(copy) == before  # read-only commands changed nothing
    assert main(["resume", str(copy)]) == 0  # rebuilt from Tune's and MLflow's record
    rows = pq.read_table(table).to_pylist()
    assert len(rows) == TRIALS and all(r["status"] == "finished" for r in rows)
    assert (copy / "trials.parquet.damaged").is_file()


def test_a_deleted_optuna_db(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = copy_of(finished, tmp_path)
    (copy / "optuna.db").unlink()
    for command in ("report", "status"):  # status reads the trials' states from Optuna
        assert main([command, str(copy)]) == 2
        one_line_error(capsys, f"{copy / 'optuna.db'} is missing")
    assert not (copy / "optuna.db").exists() and not (copy / "report").exists()


def test_a_garbage_mlflow_db(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = copy_of(finished, tmp_path)
    (copy / "mlflow.db").write_bytes(b"not a database at all " * 100)
    before = digest(copy)
    for command in ("status", "report"):
        assert main([command, str(copy)]) == 2
        one_line_error(capsys, f"{copy / 'mlflow.db'} is not a readable MLflow database")
    assert digest(copy) == before


def test_read_only_commands_change_nothing(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = digest(finished)
    assert main(["status", str(finished)]) == 0
    assert main(["ui", str(finished), "--print-only"]) == 0
    assert digest(finished) == before


def test_status_imports_no_ray(finished: Path) -> None:
    """A read-only command pays no Ray import (it is seconds, and it starts nothing)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys; from study.cli import main; "
        f"assert main(['status', {str(finished)!r}]) == 0; "
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray was imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2/2 trials ended" in out.stdout
