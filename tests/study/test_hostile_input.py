"""Hostile input (issue: nothing crashes the record, nothing escapes the study folder): YAML that
attacks the parser, and names and paths that try to leave the study's folder. Each ends with one
line naming the field and the fix, exit status 2, before Ray starts, and writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from finetune import ConfigError, load_config
from study.cli import main
from tests.conftest import small_study, tiny_base


def spec_text(tmp_path: Path, **values: object) -> str:
    spec = small_study(tmp_path / "out", "hostile", "demo", tiny_base())
    return yaml.safe_dump({**spec, **values})


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            stat = path.lstat()
            found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


def refused(tmp_path: Path, text: str | bytes, capsys: pytest.CaptureFixture) -> str:
    """Launch a spec file of ``text``; it must end with one error line, exit 2, nothing written."""
    path = tmp_path / "spec.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    before = snapshot(tmp_path)
    assert main(["launch", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert snapshot(tmp_path) == before  # nothing written anywhere under it
    return err


BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = refused(tmp_path, BOMB, capsys)
    assert err.endswith("spec.yaml: line 1: an anchor (&a) is not accepted; write the values out")


def test_a_python_tag_constructs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    marker = tmp_path / "pwned"
    text = f'name: !!python/object/apply:os.system ["touch {marker}"]\noutput_dir: out\n'
    err = refused(tmp_path, text, capsys)
    assert "the tag !!python/object/apply:os.system is not accepted (plain values only); remove it" in err
    assert not marker.exists()


def test_a_huge_spec_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "spec.yaml"
    with open(path, "wb") as handle:  # 100 MB, sparse: the check reads its size, not its bytes
        handle.truncate(100 * 2**20)
    before = snapshot(tmp_path)
    assert main(["launch", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "104,857,600 bytes, over the 1,048,576 a spec may have" in err and "\n" not in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("text", ["- name: a\n- name: b\n", "just a string\n", "42\n"], ids=["list", "str", "int"])
def test_a_spec_that_is_not_a_mapping(tmp_path: Path, text: str, capsys: pytest.CaptureFixture) -> None:
    assert "expected a mapping of study settings at the top level" in refused(tmp_path, text, capsys)


def test_a_duplicate_key_is_refused_naming_both_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = spec_text(tmp_path) + "num_samples: 50\n"
    err = refused(tmp_path, text, capsys)
    assert "key 'num_samples' is given twice (first on line" in err and err.endswith("; keep one")
    nested = "name: d\noutput_dir: out\nbase:\n  optim: {lr: 0.1, lr: 0.2}\n"
    assert "line 4: key 'lr' is given twice (first on line 4); keep one" in refused(tmp_path, nested, capsys)


def test_a_run_config_gets_the_same_loader(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("optim: {lr: 0.1}\noptim: {lr: 0.2}\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: line 2: key 'optim' is given twice \(first on line 1\)"):
        load_config(path)
    path.write_text("seed: !!python/name:os.system\n")
    with pytest.raises(ConfigError, match=r"the tag !!python/name:os\.system is not accepted"):
        load_config(path)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"name": "../../etc"}, "error: name: '../../etc' must be letters, digits, '-' or '_'"),
        ({"name": "x" * 300}, "error: name: has 300 characters; keep it to 100 (it names the MLflow experiment)"),
        ({"name": "a\0b"}, "error: name: 'a\\x00b' must be letters, digits, '-' or '_'"),
        ({"output_dir": "runs/../../../tmp/elsewhere"}, "contains '..'; write the folder's path without it"),
        ({"output_dir": "/etc/bss"}, "error: output_dir: /etc/bss is a system folder; choose a folder of your own"),
        ({"output_dir": "/"}, "error: output_dir: / is a system folder"),
        ({"output_dir": "/usr/lib/study"}, "is a system folder"),
        ({"output_dir": "out\0evil"}, "error: output_dir: contains a NUL byte; write a plain folder path"),
        ({"output_dir": "runs/" + "y" * 300}, "a name of 300 bytes is longer than a file system allows (255)"),
    ],
    ids=["name-dotdot", "name-300", "name-nul", "dir-dotdot", "dir-etc", "dir-root", "dir-usr", "dir-nul", "dir-300"],
)
def test_names_and_paths_that_leave_the_folder_are_refused(
    tmp_path: Path, values: dict, says: str, capsys: pytest.CaptureFixture
) -> None:
    text = spec_text(tmp_path, **values)
    err = refused(tmp_path, text, capsys)
    assert says in err, err
    for system in ("/etc/bss", "/usr/lib/study"):
        assert not Path(system).exists()


def test_a_symlink_to_a_system_folder_is_followed_before_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "runs").symlink_to("/etc")
    err = refused(tmp_path, spec_text(tmp_path, output_dir=str(tmp_path / "runs" / "study")), capsys)
    assert "output_dir: /etc/study is a system folder" in err


def test_a_link_inside_the_study_folder_that_leads_outside_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "trials").symlink_to(outside)  # what the study writes under trials/ would land outside
    before = snapshot(outside)
    err = refused(tmp_path, spec_text(tmp_path), capsys)
    assert f"output_dir: {out / 'trials'} is a symbolic link to {outside}, outside the study folder; remove it" in err
    assert snapshot(outside) == before
    # the same for a study folder to resume
    (out / "trials").unlink()
    (out / "spec.yaml").write_text(spec_text(tmp_path))
    (out / "study.json").write_text("{}")
    (out / "tune").symlink_to(outside)
    assert main(["resume", str(out)]) == 2
    assert "STUDY_DIR: " in capsys.readouterr().err and snapshot(outside) == before


def test_the_uis_bind_loopback_and_warn_in_one_line_on_another_host(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from tests.study.test_spec_cli import launched_folder

    folder = launched_folder(tmp_path, {"tracking_uri": None, "optuna_storage": None})
    (folder / "mlflow.db").write_bytes(b"")
    (folder / "optuna.db").write_bytes(b"")
    for verb, port in (("ui", 5000), ("dashboard", 8080)):
        assert main([verb, str(folder), "--print-only"]) == 0
        printed = capsys.readouterr()
        assert "--host 127.0.0.1" in printed.out and printed.err == ""  # loopback by default, no warning
        assert main([verb, str(folder), "--print-only", "--host", "0.0.0.0"]) == 0
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith(
            f"warning: --host 0.0.0.0: anyone on the network who reaches port {port}"
        )
    assert "MLflow can ask for a login (`mlflow server --app-name basic-auth`)" not in err  # the dashboard's own advice
    assert main(["ui", str(folder), "--print-only", "--host", "0.0.0.0"]) == 0
    assert (
        "can read and change the study (its UI and API write runs, tags and models); MLflow can ask for a login ("
        in (capsys.readouterr().err)
    )
