"""Warm starts: which earlier trials fit a new study and why the others do not (on a source folder
written in the real format), and real studies seeded from a study folder and from an MLflow
experiment (real Ray, MLflow and Optuna)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from study.cli import main
from study.record import StudyFolder, StudyRecord, TrialRow, trials_table, write_table
from study.run import WARM_ATTR, fits, seed_trials
from study.spec import StudyError, spec_from_mapping, spec_to_yaml
from tests.conftest import small_study, tiny_base

NARROW = {  # the demo space with a narrower lr and k
    "regularizer.name": {"type": "categorical", "choices": ["l2", "l2sp"]},
    "optim.lr": {"type": "loguniform", "low": 1.0e-3, "high": 3.0e-2},
    "bss.enabled": {"type": "categorical", "choices": [True, False]},
    "bss.eta": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-1, "when": {"bss.enabled": True}},
    "bss.k": {"type": "int", "low": 1, "high": 2, "when": {"bss.enabled": True}},
}


def test_fits_checks_range_step_and_choices() -> None:
    assert fits(FloatDistribution(1e-3, 3e-2, log=True), 0.01) and not fits(FloatDistribution(1e-3, 3e-2), 0.09)
    assert (
        fits(IntDistribution(1, 4), 2)
        and not fits(IntDistribution(1, 4), 5)
        and not fits(IntDistribution(0, 4, step=2), 3)
    )
    assert fits(CategoricalDistribution([True, False]), False) and not fits(CategoricalDistribution(["l2"]), "delta")
    assert not fits(FloatDistribution(0, 1), True) and not fits(FloatDistribution(0, 1), "0.5")


def plain(name: str, lr: float) -> dict[str, object]:
    return {"regularizer.name": name, "optim.lr": lr, "bss.enabled": False}


def source_folder(tmp_path: Path) -> Path:
    """A finished study's folder as the driver writes it (spec.yaml, study.json, trials.parquet), at 5%."""
    out = tmp_path / "source"
    spec = spec_from_mapping(small_study(out, "source", "demo", tiny_base(), num_samples=5), "source", tmp_path)
    out.mkdir()
    (out / "spec.yaml").write_text(spec_to_yaml(spec))
    StudyRecord(None, "1", "parent").save(StudyFolder(out))
    rows = [
        TrialRow(
            "t0", "finished", {"regularizer.name": "l2", "optim.lr": 0.01, "bss.enabled": False}, {"best_val_acc": 0.5}
        ),
        TrialRow(
            "t1", "finished", {"regularizer.name": "l2", "optim.lr": 0.09, "bss.enabled": False}, {"best_val_acc": 0.6}
        ),
        TrialRow(
            "t2", "failed", {"regularizer.name": "l2sp", "optim.lr": 0.01, "bss.enabled": False}, {}, error="boom"
        ),
        TrialRow(
            "t3",
            "finished",
            {"regularizer.name": "l2", "optim.lr": 0.01, "bss.enabled": True, "bss.eta": 0.01, "bss.k": 4},
            {"best_val_acc": 0.7},
        ),
        TrialRow(
            "t4",
            "finished",
            {"regularizer.name": "l2sp", "optim.lr": 0.005, "bss.enabled": True, "bss.eta": 0.001, "bss.k": 2},
            {"best_val_acc": 0.8},
        ),
    ]
    write_table(trials_table(rows), out / "trials.parquet")
    return out


def warm_spec(tmp_path: Path, source: object, **warm: object) -> object:
    base = tiny_base(data={"sampling_rate": 0.1})
    values = small_study(tmp_path / "new", "new", NARROW, base, warm_start={"from": source, **warm})
    return spec_from_mapping(values, "new", tmp_path)


def test_the_trials_that_fit_are_taken_and_the_others_named(tmp_path: Path) -> None:
    source = source_folder(tmp_path)
    seed = seed_trials(warm_spec(tmp_path, "source"))  # relative to the spec's folder
    assert seed.source == str(source) and seed.total == 5
    assert [t.user_attrs[WARM_ATTR] for t in seed.taken] == [f"{source}: t0", f"{source}: t4"]
    assert [t.value for t in seed.taken] == [0.5, 0.8] and seed.taken[1].params["bss.k"] == 2
    assert dict(seed.left_out) == {
        "t1": "a parameter outside the new space: optim.lr 0.09 not in [0.001, 0.03]",
        "t2": "did not run to the end: no best_val_acc",
        "t3": "a parameter outside the new space: bss.k 4 not in [1, 2]",
    }
    assert seed.summary() == (
        f"warm start: took 2 of 5 trials of {source} (2 at 5%, another sampling rate); left out 3: "
        "2 a parameter outside the new space; 1 did not run to the end"
    )
    same = seed_trials(warm_spec(tmp_path, "source", same_rate=True))
    assert (
        not same.taken and dict(same.left_out)["t0"] == "a different rate: data.sampling_rate is 0.05 there, 0.1 here"
    )


def test_a_warm_start_that_cannot_work_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match=r"^warm_start\.from: 'nowhere' is neither a study folder nor an MLflow"):
        seed_trials(warm_spec(tmp_path, "nowhere"))
    grid = small_study(tmp_path / "g", "g", {"grid": {"seed": [0, 1]}}, tiny_base(), warm_start={"from": "x"})
    with pytest.raises(StudyError, match=r"^warm_start: .* is a grid, which samples nothing"):
        spec_from_mapping(grid, "g", tmp_path)
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "spec.yaml").write_text("name: x\n")
    (tmp_path / "unfinished" / "study.json").write_text("{}")
    with pytest.raises(StudyError, match=r"^warm_start\.from: .*unfinished has no readable trials\.parquet"):
        seed_trials(warm_spec(tmp_path, "unfinished"))


def launch_warm(tmp_path: Path, name: str, shared: str, source: str) -> None:
    base = tiny_base(optim={"epochs": 1, "steps_per_epoch": 2}, data={"sampling_rate": 0.1})
    values = small_study(tmp_path / name, name, "demo", base, tracking_uri=shared, warm_start={"from": source})
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(values))
    assert main(["launch", str(tmp_path / f"{name}.yaml")]) == 0


def assert_seeded(tmp_path: Path, name: str, shared: str, label: str, taken: int, printed: str) -> None:
    assert f"warm start: took {taken} of 4 trials of {label} ({taken} at 5%, another sampling rate)" in printed
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / name / 'optuna.db'}")
    warm_trials = [t for t in study.trials if WARM_ATTR in t.user_attrs]
    own = [t for t in study.trials if WARM_ATTR not in t.user_attrs]
    assert len(warm_trials) == taken and len(own) == 2  # the warm ones seed the sampler, not the count
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len(pq.read_table(tmp_path / name / "trials.parquet").to_pylist()) == 2
    client = MlflowClient(shared)
    parent_id = StudyRecord.load(StudyFolder(tmp_path / name)).parent_run_id
    params = client.get_run(parent_id).data.params
    assert params["warm_start.taken"] == str(taken) and params["warm_start.source"] == label
    assert "warm_start.txt" in {a.path for a in client.list_artifacts(parent_id)}


@pytest.mark.slow
def test_real_studies_warm_started_from_a_folder_and_from_an_mlflow_experiment(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"  # one tracking store: the experiment source is found on it
    base = tiny_base(optim={"epochs": 1, "steps_per_epoch": 2})
    source = small_study(tmp_path / "src", "src", "demo", base, num_samples=4, tracking_uri=shared)
    (tmp_path / "src.yaml").write_text(yaml.safe_dump(source))
    assert main(["launch", str(tmp_path / "src.yaml")]) == 0
    capsys.readouterr()
    rows = pq.read_table(tmp_path / "src" / "trials.parquet").to_pylist()
    taken = sum(1 for r in rows if r["status"] == "finished" and r["best_val_acc"] is not None)

    launch_warm(tmp_path, "from-folder", shared, str(tmp_path / "src"))
    assert_seeded(tmp_path, "from-folder", shared, str(tmp_path / "src"), taken, capsys.readouterr().out)
    assert main(["status", str(tmp_path / "from-folder")]) == 0
    assert "2/2 trials ended (finished 2)" in capsys.readouterr().out

    (tmp_path / "src").rename(tmp_path / "src-moved")  # no folder of that name now: the experiment is meant
    launch_warm(tmp_path, "from-experiment", shared, "src")
    assert_seeded(tmp_path, "from-experiment", shared, "MLflow experiment 'src'", taken, capsys.readouterr().out)
