"""Bad input is caught before Ray starts: one line naming the field, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from study.cli import main
from study.spec import StudyError, load_spec, spec_from_mapping
from tests.conftest import REPO


def write_spec(tmp_path: Path, **changes: object) -> Path:
    spec = yaml.safe_load((REPO / "studies" / "demo.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "out")
    for key, value in changes.items():
        node = spec
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_demo_spec_is_valid(tmp_path: Path) -> None:
    spec = load_spec(REPO / "studies" / "demo.yaml", relative_to=tmp_path)
    assert spec.num_samples >= 8 and spec.max_concurrent == 2 and spec.base_config.data.sampling_rate == 0.15
    assert Path(spec.output_dir).is_absolute()
    from study.record import choose

    stores = choose(spec.tracking_uri, spec.optuna_storage, spec.study_dir, tmp_path, environ={}).open(spec.study_dir)
    assert stores.tracking_uri == f"sqlite:///{tmp_path / 'runs' / 'demo' / 'mlflow.db'}" and stores.tracking_local


def test_selection_follows_the_space_and_reaches_the_trials(tmp_path: Path) -> None:
    """A grid of fixed settings reports the last epoch's test accuracy; a search selects on
    validation. Either way the trials' config says which (``data.selection``)."""
    search = load_spec(write_spec(tmp_path))
    assert (search.selection, search.metric, search.base_config.data.selection) == (
        "best_val",
        "best_val_acc",
        "best_val",
    )
    grid = load_spec(write_spec(tmp_path, search_space="methods-grid", num_samples=6, scheduler={"name": "fifo"}))
    assert (grid.selection, grid.metric, grid.base_config.data.selection) == ("last", "test_acc", "last")
    chosen = load_spec(
        write_spec(
            tmp_path, search_space="methods-grid", num_samples=6, scheduler={"name": "fifo"}, selection="best_val"
        )
    )
    assert (chosen.metric, chosen.base_config.data.selection) == ("best_val_acc", "best_val")
    older = load_spec(
        write_spec(
            tmp_path, search_space="methods-grid", num_samples=6, scheduler={"name": "fifo"}, metric="best_val_acc"
        )
    )
    assert older.selection == "best_val"  # a spec written before `selection` keeps what it ran with
    from study.spec import spec_to_yaml

    again = tmp_path / "again.yaml"
    again.write_text(spec_to_yaml(grid))  # the study folder's copy loads to the same spec
    assert load_spec(again) == grid


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"bogus": 1}, "bogus"),
        ({"search_space": "nope"}, "search_space"),
        ({"scheduler.name": "pbt"}, "scheduler.name"),
        ({"num_samples": 0}, "num_samples"),
        ({"base.bss.eta": -1.0}, "base.bss.eta"),
        ({"base.bss.enabled": True, "base.bss.k": 32}, "base.bss.k"),
        ({"base.data.sampling_rate": 1.5}, "base.data.sampling_rate"),
        ({"base.regularizer.name": "dropout"}, "base.regularizer.name"),
        ({"base.model.backbone": "vgg99"}, "base.model.backbone"),
        ({"base.model.weights": "/no/such/weights.pt"}, "base.model.weights"),
        ({"base.data.dataset": "imagenet22k"}, "base.data.dataset"),
        ({"base.data.batch_size": 4}, "search_space"),  # the space proposes k up to 4: k >= batch
        ({"base.data.dataset": "cub200"}, "base.data.root"),
        ({"base.data.dataset": "cub200", "base.data.root": "/no/such/cub"}, "base.data.root"),
        ({"base.protocol": "imagenet"}, "base.protocol"),
        ({"search_space": "methods-grid", "num_samples": 7}, "num_samples"),
        ({"search_space": "methods-grid", "num_samples": 6}, "scheduler"),  # no early stopping inside a table
        ({"metric": "val_acc"}, "metric"),
        ({"metric": "test_acc"}, "metric"),  # a search selects on validation, never on test
        ({"selection": "last"}, "selection"),  # ... and so cannot report the last epoch's test accuracy
        ({"selection": "best"}, "selection"),
        ({"base.data.selection": "last"}, "base.data.selection"),  # said once, at the top
        ({"reuse_actors": "sometimes"}, "reuse_actors"),
        # a config that cannot work is refused before the study, not by every trial failing
        ({"base.data.batch_size": 1000}, "base.data.batch_size"),
        ({"base.device": "tpu"}, "base.device"),
        ({"base.device": "cuda"}, "resources.gpu"),
        ({"base.optim.epochs": 2, "base.optim.lr_decay_epochs": [10]}, "base.optim.lr_decay_epochs"),
        ({"tracking_uri": "ftp://x"}, "tracking_uri"),
        ({"output_dir": "/proc/x"}, "output_dir"),
        ({"ray_num_cpus": 0}, "ray_num_cpus"),
        ({"resources.gpu": -1}, "resources.gpu"),
        ({"resources.cpu": 0}, "resources.cpu"),
        ({"resources.cpu": 3}, "resources.cpu"),  # more than ray_num_cpus: 2
        ({"resources.gpu": 1}, "resources.gpu"),  # this machine has none
    ],
)
def test_bad_spec_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict, field: str
) -> None:
    path = write_spec(tmp_path, **changes)
    assert main(["launch", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {field}"), err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_weights_file_that_is_not_a_state_dict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    weights = tmp_path / "w.pt"
    torch.save([1, 2, 3], weights)
    assert main(["launch", str(write_spec(tmp_path, **{"base.model.weights": str(weights)}))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: base.model.weights:") and "not a state dict" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_output_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").write_text("x")
    assert main(["launch", str(write_spec(tmp_path))]) == 2
    assert capsys.readouterr().err.startswith("error: output_dir:")
    assert (tmp_path / "out").read_text() == "x"


def test_binary_spec_and_config_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["launch", str(binary)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {binary}: not a text (UTF-8) file; pass a YAML file"
    assert main(["train", "--config", str(binary)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --config:") and "not a text (UTF-8) file" in err and len(err.splitlines()) == 1


def test_loading_a_spec_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", str(write_spec(tmp_path, **{"base.data.batch_size": 1000}))]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "A new study created in memory" not in captured.err


def test_malformed_yaml_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert main(["launch", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["launch", str(tmp_path / "missing.yaml")]) == 2
    assert "SPEC: no file" in capsys.readouterr().err


def test_train_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: --config: no file")


def launched_folder(tmp_path: Path, record: dict) -> Path:
    """A study folder as launch leaves it (spec.yaml, study.json), without running anything."""
    from study.spec import spec_to_yaml

    folder = tmp_path / "out"
    folder.mkdir()
    spec = load_spec(write_spec(tmp_path, tracking_uri=record.get("tracking_uri")))
    (folder / "spec.yaml").write_text(spec_to_yaml(spec))
    (folder / "study.json").write_text(json.dumps({"experiment_id": "1", "parent_run_id": "x", **record}))
    return folder


def test_ui_prints_loopback_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ui", str(tmp_path)]) == 2
    folder = launched_folder(tmp_path, {"tracking_uri": None, "optuna_storage": None})
    assert main(["ui", str(folder)]) == 2
    assert "no mlflow.db in" in capsys.readouterr().err
    (folder / "mlflow.db").write_bytes(b"")
    assert main(["ui", str(folder), "--print-only"]) == 0
    out = capsys.readouterr().out
    assert "--host 127.0.0.1" in out and f"sqlite:///{folder.resolve()}/mlflow.db" in out
    assert "the study's runs: http://127.0.0.1:5000/#/experiments/1/runs" in out  # not MLflow 3's GenAI overview
    assert main(["ui", str(folder), "--port", "99999"]) == 2
    assert capsys.readouterr().err.startswith("error: --port: 99999 is not a TCP port")


def test_ui_of_a_study_on_a_tracking_server_names_the_server_and_serves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = launched_folder(tmp_path, {"tracking_uri": "http://10.1.2.3:5000", "optuna_storage": None})
    assert main(["ui", str(folder)]) == 0  # returns: no server was exec'd
    out = capsys.readouterr().out
    assert "tracked by the MLflow server at http://10.1.2.3:5000; nothing is served here" in out
    assert "the study's runs: http://10.1.2.3:5000/#/experiments/1/runs" in out and "mlflow ui" not in out


def test_ui_of_an_external_sqlite_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """749f745 answered "mlflow.db is missing" for every sqlite: URI that was not the folder's own."""
    from mlflow.tracking import MlflowClient

    external = tmp_path / "shared" / "mlflow.db"
    external.parent.mkdir()
    MlflowClient(f"sqlite:///{external}").search_experiments()  # creates the database
    folder = launched_folder(tmp_path, {"tracking_uri": f"sqlite:///{external}", "optuna_storage": None})
    assert main(["ui", str(folder), "--print-only"]) == 0
    assert f"--backend-store-uri sqlite:///{external}" in capsys.readouterr().out


def test_dashboard_prints_loopback_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: STUDY_DIR: ")
    folder = launched_folder(tmp_path, {"tracking_uri": None, "optuna_storage": None})
    assert main(["dashboard", str(folder)]) == 2
    assert capsys.readouterr().err.startswith("error: STUDY_DIR: no optuna.db in")
    (folder / "optuna.db").write_bytes(b"")
    assert main(["dashboard", str(folder), "--print-only"]) == 0
    out = capsys.readouterr().out
    assert f"sqlite:///{folder.resolve()}/optuna.db --host 127.0.0.1 --port 8080" in out
    assert "http://127.0.0.1:8080/dashboard" in out
    assert main(["dashboard", str(folder), "--port", "0"]) == 2


@pytest.mark.parametrize("verb", ["launch", "train", "ui", "dashboard"])
def test_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([verb, "--help"])
    assert info.value.code == 0
    assert "usage: study" in capsys.readouterr().out


def test_cluster_study_spec_validates_against_a_cub_layout(tmp_path: Path) -> None:
    from tests.dataset_layouts import cub200

    spec = yaml.safe_load((REPO / "studies" / "cub200-methods.yaml").read_text())
    spec["base"]["data"]["root"] = str(cub200(tmp_path / "cub"))
    spec["output_dir"] = str(tmp_path / "out")
    path = tmp_path / "cub.yaml"
    path.write_text(yaml.safe_dump(spec))
    from study.spec import StudyError, check_inputs

    # the test layout has a few images a class: the tllib batch of 48 cannot be filled, said before launch
    with pytest.raises(StudyError, match=r"^base\.data\.batch_size: 48 is more than the \d+ training images"):
        check_inputs(load_spec(path))
    spec["base"]["data"]["batch_size"] = 2
    path.write_text(yaml.safe_dump(spec))
    loaded = load_spec(path)
    check_inputs(loaded)
    config = loaded.base_config
    assert config.protocol == "tllib" and config.model.backbone == "resnet50" and config.data.batch_size == 2
    assert loaded.space.grid_size == 6


def test_gpus_asked_but_absent_fail_before_anything_is_written(tmp_path: Path) -> None:
    from study.spec import StudyError, check_local_resources

    spec = load_spec(write_spec(tmp_path, **{"resources.gpu": 0.25}))
    with pytest.raises(StudyError, match=r"^resources\.gpu: each trial asks for 0\.25 GPUs but this machine has 0"):
        check_local_resources(spec, cpus=2, gpus=0)
    check_local_resources(spec, cpus=2, gpus=1)
    cpu_hungry = load_spec(write_spec(tmp_path, **{"resources.cpu": 4}))
    with pytest.raises(StudyError, match=r"^resources\.cpu: each trial asks for 4 CPUs but the local Ray cluster"):
        check_local_resources(cpu_hungry, cpus=64, gpus=0)  # ray_num_cpus: 2 in the spec
    assert not (tmp_path / "out").exists()


def test_ray_address_from_ray_job_submit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver started by `ray job submit` has RAY_ADDRESS: it joins that cluster, and the local
    checks (ray_num_cpus, this machine's CPUs and GPUs) do not apply."""
    from study.spec import check_local_resources

    spec = load_spec(write_spec(tmp_path, **{"resources.cpu": 3}, ray_num_cpus=2, ray_address=None))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert spec.cluster_address is None
    with pytest.raises(StudyError, match=r"^resources\.cpu"):
        check_local_resources(spec, 2, 0)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert spec.cluster_address == "10.0.0.5:6379"
    check_local_resources(spec, 2, 0)


def test_schedulers_build() -> None:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler

    from study.run import make_scheduler
    from study.spec import SchedulerSpec, StudySpec

    kinds = {"asha": ASHAScheduler, "hyperband": HyperBandScheduler, "fifo": FIFOScheduler}
    for name, cls in kinds.items():
        spec = StudySpec(name="x", output_dir="/tmp/x", scheduler=SchedulerSpec(name=name))
        assert isinstance(make_scheduler(spec, 8), cls)


def test_unreachable_tracking_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    path = write_spec(tmp_path, tracking_uri=f"http://127.0.0.1:{port}")
    assert main(["launch", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"error: tracking_uri: http://127.0.0.1:{port} does not answer") and len(err.splitlines()) == 1
    )
    assert not (tmp_path / "out").exists()


def test_sweep_efficiency() -> None:
    from study.record import TrialRow
    from study.run import sweep_efficiency

    rows = [TrialRow(str(i), "finished", {}, {"time_total_s": 9.0, "start_epoch": 0.0}) for i in range(4)]
    value, overhead = sweep_efficiency(rows, wall=20.0, slots=2)  # type: ignore[misc]
    assert value == pytest.approx(36 / 40) and overhead == pytest.approx(1.0)
    resumed = [*rows[:3], TrialRow("r", "finished", {}, {"time_total_s": 3.0, "start_epoch": 2.0})]
    assert sweep_efficiency(resumed, wall=20.0, slots=2) is None
    retried = [*rows[:3], TrialRow("r", "finished", {}, {"time_total_s": 3.0}, retries=1)]
    assert sweep_efficiency(retried, wall=20.0, slots=2) is None


def test_progress_line_bar_best_and_time_left() -> None:
    from study.run import ProgressLine

    progress = ProgressLine(requested=8, metric="test_acc")
    progress.ended = {"a", "b"}
    progress.best = 0.75
    progress.started -= 120  # two trials ended here in two minutes: the four left take about four
    line = progress.line("b", "finished", ended_before=2)
    assert line.startswith("[study] [##########..........] 4/8 ended, best test_acc 0.7500, 2m00s elapsed")
    assert "~4m00s left" in line and "(trial b finished)" in line


def test_callbacks_pickled_by_an_older_version_resume(tmp_path: Path) -> None:
    """Tune restores its callbacks from the pickled state of an interrupted study: ones saved before
    a field existed get its default instead of failing the resumed study."""
    import pickle

    from study.run import OptunaNumber
    from study.tracking import MlflowTrialLogger, ProgressLine  # where older versions pickled them from

    progress = ProgressLine(requested=4)
    for name in ("started_here", "started"):
        del progress.__dict__[name]
    restored = pickle.loads(pickle.dumps(progress))
    restored.on_trial_start(0, [], type("T", (), {"trial_id": "t1"})())
    assert restored.started_here == {"t1"} and "1/4 ended" in restored.line("t1", "finished", ended_before=1)
    # an older logger held a folder-relative URI and an Optuna lookup: it unpickles onto the binding's
    # study, keyed by its parent run id, and keeps nothing of the URI
    logger = MlflowTrialLogger("parent", "1", "parent", {}, 2, "name")
    old_state = {
        "tracking_uri": "sqlite:///mlflow.db",
        "experiment_id": "1",
        "parent_run_id": "parent",
        "base": {},
        "max_epochs": 2,
        "optuna_number": OptunaNumber("sqlite:///optuna.db", "name"),
    }
    logger.__setstate__(old_state)
    assert (logger.key, logger.study_name) == ("parent", "name")
    assert "tracking_uri" not in pickle.loads(pickle.dumps(logger)).__dict__


@pytest.mark.parametrize(
    "name", ["demo", "fig3d-embedded", "fig3d-embedded-epochs", "table3-embedded", "table3-eta-embedded"]
)
def test_every_shipped_study_on_the_embedded_data_passes_its_launch_checks(name: str, tmp_path: Path) -> None:
    from study.spec import check_inputs

    spec = load_spec(REPO / "studies" / f"{name}.yaml", relative_to=tmp_path)
    check_inputs(spec)
    assert spec.space.grid_size is None or spec.num_samples == spec.space.grid_size  # a grid runs whole


def test_a_search_over_a_task_sequence_must_report_the_last_epoch(tmp_path: Path) -> None:
    from study.spec import StudyError
    from tests.finetune.test_incremental import sequence_base

    base = sequence_base()
    del base["data"]["selection"]
    values = {"name": "seq", "output_dir": str(tmp_path / "o"), "search_space": "demo", "base": base}
    with pytest.raises(StudyError, match=r"^base\.data\.selection: a task sequence reports its last epoch"):
        spec_from_mapping(values, "seq.yaml", tmp_path)


def test_a_spec_names_what_it_holds_fixed_across_rates(tmp_path: Path) -> None:
    steps = load_spec(REPO / "studies" / "fig3d-embedded.yaml", tmp_path)
    epochs = load_spec(REPO / "studies" / "fig3d-embedded-epochs.yaml", tmp_path)
    assert (steps.held_fixed, epochs.held_fixed) == ("steps", "epochs")
    assert epochs.base_config.optim.steps_per_epoch is None and steps.base_config.optim.steps_per_epoch == 30
    assert load_spec(write_spec(tmp_path), tmp_path).held_fixed == "epochs"  # left out: as the base config does
    with pytest.raises(StudyError, match=r"^held_fixed: steps, but the base config holds epochs fixed; set base\."):
        load_spec(write_spec(tmp_path, held_fixed="steps"), tmp_path)
    with pytest.raises(StudyError, match=r"^held_fixed: must be steps or epochs, got 'iterations'"):
        load_spec(write_spec(tmp_path, held_fixed="iterations"), tmp_path)


def test_a_folder_written_before_a_spec_field_existed_still_holds_its_study(tmp_path: Path) -> None:
    """A complete study folder whose spec.yaml predates ``held_fixed`` and ``confirm`` is the same
    study (re-launching it shows its table), and a folder of another study is still refused."""
    from study.record import StudyFolder, TrialRow, trials_table, write_table
    from study.run import check_study_dir
    from study.spec import spec_to_yaml

    spec = load_spec(write_spec(tmp_path), tmp_path)
    folder = StudyFolder(spec.study_dir)
    folder.path.mkdir(parents=True)
    old = yaml.safe_load(spec_to_yaml(spec))
    del old["held_fixed"], old["confirm"]
    (folder.path / "spec.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    write_table(trials_table([TrialRow("t", "finished", {}, {"test_acc": 0.5})]), folder.trials_file)
    assert check_study_dir(spec) is True
    other = load_spec(write_spec(tmp_path, num_samples=3), tmp_path)
    with pytest.raises(StudyError, match="already holds a different study"):
        check_study_dir(other)
