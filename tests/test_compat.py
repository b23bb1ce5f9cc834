"""Every private API or version-dependent signature of a dependency, exercised on the installed
version (``compat.USES``), and the supported ranges (``compat.supported``) held to pyproject.

Each test names the dependency and the use; when a version removes or changes one, its test fails
with compat's one-line message naming the dependency, the installed version, the name and the
supported range. ``make compat`` runs this file on the oldest, newest and mixed sets.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import optuna
import pytest
import tomllib
import torch

import compat
from compat import for_mlflow, for_optuna, for_ray, for_torch
from tests.conftest import REPO

PROBED: set[str] = set()


def probes(use: str):  # type: ignore[no-untyped-def]
    PROBED.add(use)
    return pytest.mark.parametrize("use", [use])


@probes("torch-foreach")
def test_torch_foreach(use: str) -> None:
    a, b = [torch.ones(3), torch.full((2,), 2.0)], [torch.zeros(3), torch.ones(2)]
    diffs = for_torch.foreach_sub(a, b)
    assert [d.tolist() for d in diffs] == [[1.0, 1.0, 1.0], [1.0, 1.0]]
    assert [float(n) for n in for_torch.foreach_norm(diffs)] == pytest.approx([3**0.5, 2**0.5])
    assert [t.tolist() for t in for_torch.foreach_mul(diffs, 2.0)] == [[2.0, 2.0, 2.0], [2.0, 2.0]]


@probes("torchvision-file-lists")
def test_torchvision_file_lists(use: str, tmp_path: Path) -> None:
    """The private attributes each dataset class sets in its __init__ (no dataset files here)."""
    from torchvision.datasets import FGVCAircraft, OxfordIIITPet, StanfordCars

    for cls, names in ((OxfordIIITPet, ("_images", "_labels")), (FGVCAircraft, ("_image_files", "_labels"))):
        source = inspect.getsource(cls.__init__)
        assert all(f"self.{name} = " in source or f"self.{name}." in source for name in names), cls
    assert "self._samples = " in inspect.getsource(StanfordCars.__init__)
    fake = type("StanfordCars", (), {"_samples": [("a.jpg", 3)]})()
    assert for_torch.torchvision_file_list(fake) == [(Path("a.jpg"), 3)]
    pets = type("OxfordIIITPet", (), {"_images": ["p.jpg"], "_labels": [1]})()
    assert for_torch.torchvision_file_list(pets) == [(Path("p.jpg"), 1)]


@probes("ray-result-trials")
def test_ray_result_trials(use: str) -> None:
    from ray.tune import ResultGrid
    from ray.tune.analysis import ExperimentAnalysis

    class Analysis:  # what ResultGrid wraps: an ExperimentAnalysis, whose __init__ sets .trials
        trials = ()

    assert for_ray.tune_result_trials(ResultGrid(Analysis())) == []  # type: ignore[arg-type]
    assert "self.trials = " in inspect.getsource(ExperimentAnalysis.__init__)


@probes("ray-optuna-search")
def test_ray_optuna_search(use: str, tmp_path: Path) -> None:
    from ray.tune.search.optuna import OptunaSearch

    def space(trial: optuna.Trial) -> None:
        trial.suggest_float("x", 0.0, 1.0)

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    search = OptunaSearch(space=space, metric="m", mode="max", study_name="s", storage=storage)
    search._setup_study("max")  # the hook TaggedOptunaSearch overrides
    assert isinstance(for_ray.ot_study(search), optuna.Study) and for_ray.search_metric(search) == "m"
    assert isinstance(for_ray.ot_trials(search), dict) and isinstance(for_ray.completed_trials(search), set)
    assert search.suggest("t1") is not None and "t1" in for_ray.ot_trials(search)


@probes("ray-tune-stop-signal")
def test_ray_tune_stop_signal(use: str) -> None:
    """Tune's fit catches SIGUSR1 and ends its loop as for Ctrl-C (an event its loop checks)."""
    import signal

    from ray.tune import tune as tune_module

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1)
    try:
        interrupted = tune_module._setup_signal_catching()
        assert not interrupted.is_set()
        for_ray.stop_tune_run()
        assert interrupted.is_set()
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGUSR1, handlers[1])


@probes("ray-tune-state-file")
def test_ray_tune_state_file(use: str, tmp_path: Path) -> None:
    """Tune's experiment state file as TuneController.save_to_dir writes it: ``trial_data``, a list of
    each trial's ``get_json_state()`` (its JSON state string, its runtime metadata)."""
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    source = inspect.getsource(TuneController.save_to_dir)
    assert '"trial_data": list(self._get_trial_checkpoints().values())' in source
    assert "get_json_state()" in inspect.getsource(TuneController._get_trial_checkpoints)
    assert TuneController.CKPT_FILE_TMPL.format("x") == "experiment_state-x.json"  # the file's name
    trial = Trial("trainable", trial_id="abc12345", stub=True)
    trial.set_status(Trial.TERMINATED)
    path = tmp_path / "experiment_state-2026-12-06_10-00-00.json"
    path.write_text(json.dumps({"trial_data": [list(trial.get_json_state())]}))
    found = for_ray.tune_state_file(tmp_path)
    assert found is not None and found[0] == path
    assert for_ray.tune_saved_statuses(path) == {"abc12345": "TERMINATED"}
    path.write_text('{"trial_data": [["{\\"trial_id')  # being written: not readable whole
    assert for_ray.tune_saved_statuses(path) is None


@probes("optuna-trial-id")
def test_optuna_trial_id(use: str) -> None:
    study = optuna.create_study()
    trial = study.ask()
    (frozen,) = study.get_trials(deepcopy=False)
    assert for_optuna.frozen_trial_id(frozen) == trial._trial_id
    optuna.Trial(study, for_optuna.frozen_trial_id(frozen)).set_user_attr("seen", True)
    assert study.trials[0].user_attrs == {"seen": True}


@probes("optuna-rdb-methods")
def test_optuna_rdb_methods(use: str, tmp_path: Path) -> None:
    """The private methods this Optuna has are retried, and so is every public call behind them."""
    from study.record import RetryingStorage
    from study.record.optuna_storage import RETRIED

    found = for_optuna.rdb_storage_methods()
    assert found and set(found) <= set(for_optuna.OPTUNA_RDB_PRIVATE)
    for name in RETRIED:
        assert getattr(RetryingStorage, name) is not getattr(optuna.storages.RDBStorage, name), name
    storage = RetryingStorage(f"sqlite:///{tmp_path / 'o.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, 0.5)
    assert study.best_trial.params == {"x": trial.params["x"]}


@probes("optuna-rdb-schema")
def test_optuna_rdb_schema(use: str, tmp_path: Path) -> None:
    """`study status`'s direct read of Optuna's tables gives what Optuna's own API gives."""
    import sqlite3

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.set_user_attr("bss_study.uid", "u1")
    for i, how in enumerate(("complete", "pruned", "fail", "running", "complete")):
        trial = study.ask()
        trial.set_user_attr("tune_trial_id", f"t{i}")
        for step in (1, 2):
            trial.report(0.1 * i + 0.01 * step, step)
        if how == "complete":
            study.tell(trial, 0.5 + i)
        elif how == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif how == "fail":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    with sqlite3.connect(tmp_path / "o.db") as connection:
        found = for_optuna.read_summaries(connection, "s")
        assert for_optuna.read_summaries(connection, "no-such-study") is None
    assert found is not None
    attrs, summaries = found
    assert attrs == {"bss_study.uid": "u1"}
    expected = [
        (t.number, t.state.name, t.values[0] if t.values else None, max(t.intermediate_values.values()), t.user_attrs)
        for t in optuna.load_study(study_name="s", storage=storage).get_trials()
    ]
    got = [(t.number, t.state, t.value, t.best_intermediate, t.user_attrs) for t in summaries]
    assert got == expected


@probes("optuna-finished-trial-error")
def test_optuna_finished_trial_error(use: str) -> None:
    """What updating a finished trial raises on this Optuna is what the storage's retry recognises."""
    error, is_finished = for_optuna.finished_trial_error()
    study = optuna.create_study()
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(error) as caught:
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.COMPLETE, [1.0])
    assert is_finished(caught.value)
    assert not is_finished(RuntimeError("something else")) or error is not RuntimeError


@probes("mlflow-system-metrics")
def test_mlflow_system_metrics(use: str, tmp_path: Path) -> None:
    """A monitor bound to the study's store where MLflow can (3.7 on); before, one line saying why not."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("e", artifact_location=tmp_path.as_uri()))
    if "tracking_uri" in inspect.signature(SystemMetricsMonitor).parameters:
        monitor = for_mlflow.system_metrics_monitor(run.info.run_id, uri)
        assert callable(monitor.start) and callable(monitor.finish)
    else:
        with pytest.raises(compat.Unavailable) as caught:
            for_mlflow.system_metrics_monitor(run.info.run_id, uri)
        assert "\n" not in str(caught.value) and str(caught.value).startswith(f"mlflow {compat.version('mlflow')}")


@probes("mlflow-proxied-artifacts")
def test_mlflow_proxied_artifacts(use: str, tmp_path: Path) -> None:
    """A client of a tracking server: MLflow's global tracking URI is the client's inside the block
    only where its artifact repositories cannot be told it; a local store changes nothing."""
    import os

    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.tracking import MlflowClient

    before = mlflow.get_tracking_uri()
    server = MlflowClient("http://127.0.0.1:9")  # no server needed: nothing is sent
    with for_mlflow.artifacts_of(server):
        inside = mlflow.get_tracking_uri()
    needs = "tracking_uri" not in inspect.signature(get_artifact_repository).parameters
    assert (inside == "http://127.0.0.1:9") == needs
    assert mlflow.get_tracking_uri() == before and ("MLFLOW_TRACKING_URI" in os.environ) == bool(
        os.environ.get("MLFLOW_TRACKING_URI")
    )
    with for_mlflow.artifacts_of(MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")):
        assert mlflow.get_tracking_uri() == before


@probes("mlflow-pytorch-log-model")
def test_mlflow_pytorch_log_model(use: str) -> None:
    """The arguments given are parameters of this MLflow's log_model (never left to its **kwargs)."""
    import mlflow.pytorch

    arguments = for_mlflow.pytorch_log_model_arguments("model")
    parameters = inspect.signature(mlflow.pytorch.log_model).parameters
    assert set(arguments) <= set(parameters)
    assert "model" in (arguments.get("name"), arguments.get("artifact_path"))


@probes("mlflow-artifact-cache")
def test_mlflow_artifact_cache(use: str) -> None:
    from mlflow.tracking._tracking_service import utils

    utils._artifact_repos_cache["run-x"] = object()
    for_mlflow.forget_artifact_repos(["run-x"])
    assert "run-x" not in utils._artifact_repos_cache


def test_every_use_is_probed_and_every_guard_is_listed() -> None:
    assert set(compat.USES) == PROBED
    source = "".join(path.read_text() for path in Path(compat.__file__).parent.glob("*.py"))
    assert set(re.findall(r'_guard\("([a-z-]+)"', source)) == set(compat.USES)


def test_a_removed_private_name_is_one_line_naming_the_dependency_version_and_range() -> None:
    gone = object()  # an OptunaSearch of a Ray that renamed _ot_study
    with pytest.raises(compat.CompatError) as caught:
        for_ray.ot_study(gone)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"ray {compat.version('ray')}: OptunaSearch._ot_study")
    assert "the supported range is ray >=2.44,<2.61 (tested 2.44.1 to 2.60.0)" in message
    assert "AttributeError" in message


def test_a_changed_signature_is_the_same_one_line() -> None:
    """A TypeError from a call whose arguments changed is the compat line, not a raw TypeError."""

    def changed(*_args: object) -> None:
        raise TypeError("SystemMetricsMonitor.__init__() got an unexpected keyword argument 'tracking_uri'")

    with pytest.raises(compat.CompatError) as caught:
        compat._guard("mlflow-system-metrics", changed)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"mlflow {compat.version('mlflow')}: ")
    assert "TypeError: SystemMetricsMonitor" in message and "the supported range is mlflow >=2.21" in message


def test_the_declared_ranges_are_the_supported_ones() -> None:
    """pyproject.toml admits exactly compat.supported's ranges (its extras too), and the installed
    versions are in them."""
    from compat.supported import SUPPORTED
    from compat.versions import problems

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    for name, supported in SUPPORTED.items():
        specs = [d for d in declared if re.split(r"[\[<>=;]", d, maxsplit=1)[0].strip().lower() == name]
        assert specs, f"{name} is not declared in pyproject.toml"
        for spec in specs:
            assert spec.endswith(supported.range), (name, spec, supported.range)
    assert problems() == []


def test_every_version_dependent_use_names_a_supported_dependency() -> None:
    from compat.supported import SUPPORTED

    assert {use.dependency for use in compat.USES.values()} <= set(SUPPORTED)


def test_the_matrix_sets_keep_the_pairings() -> None:
    """Each set of ``make compat`` pins versions that satisfy every pairing (MLflow < 3.9 with
    SQLAlchemy < 2.1) and takes each dependency at its floor or its ceiling."""
    from compat.supported import PAIRINGS, SETS, SUPPORTED
    from compat.versions import older, within

    assert {s.name for s in SETS} >= {"newest", "oldest"}
    for matrix_set in SETS:
        pins = matrix_set.pins()
        assert set(pins) == set(SUPPORTED)
        inside = dict(matrix_set.between)
        for name, version in pins.items():
            if name in inside:  # a release inside the range where the ends of two cannot meet
                assert within(version, SUPPORTED[name]) and version == inside[name], (matrix_set.name, name)
            else:
                assert version in (SUPPORTED[name].min, SUPPORTED[name].max), (matrix_set.name, name)
        for pair in PAIRINGS:
            if older(pins[pair.dependency], pair.before):
                assert older(pins[pair.other], pair.other_before), (matrix_set.name, pair)
