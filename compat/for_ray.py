"""Ray Tune's private names and changed signatures (the run room imports this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compat import _guard


def tune_result_trials(results: Any) -> list[Any]:
    """Every Tune trial of a fit: ``ResultGrid`` lists results, not the trials (their ids, status
    and error files)."""
    return _guard("ray-result-trials", lambda: list(results._experiment_analysis.trials))


def tune_state_file(tune_dir: Path | str) -> tuple[Path | str, float] | None:
    """Tune's newest experiment state file in ``tune_dir`` (a folder, or a URI in an object store)
    and its modification time (None: none yet)."""

    def pattern() -> str:
        from ray.tune.execution.tune_controller import TuneController

        return str(TuneController.CKPT_FILE_TMPL.format("*"))

    files = _guard("ray-tune-state-file", pattern)
    found: list[tuple[float, Path | str]]
    try:
        if isinstance(tune_dir, str) and "://" in tune_dir:
            found = _stored_matches(tune_dir, files)
        else:
            found = [(p.stat().st_mtime, p) for p in Path(tune_dir).glob(files)]
    except (OSError, ValueError):  # one replaced while listed (or the store did not answer): the next look sees it
        return None
    if not found:
        return None
    mtime, path = max(found, key=lambda pair: (pair[0], str(pair[1])))
    return path, mtime


def _stored_matches(uri: str, pattern: str) -> list[tuple[float, Path | str]]:
    import fnmatch

    import pyarrow.fs as pafs

    fs, prefix = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(prefix, allow_not_found=True))
    return [
        (info.mtime.timestamp() if info.mtime is not None else 0.0, f"{uri.rstrip('/')}/{info.base_name}")
        for info in infos
        if info.type == pafs.FileType.File and fnmatch.fnmatch(info.base_name, pattern)
    ]


def tune_saved_statuses(path: Path | str) -> dict[str, str] | None:
    """Tune trial id -> status (``TERMINATED``, ``ERROR``, ``RUNNING``...) as an experiment state
    file records them; None while it cannot be read whole (being written)."""
    import json

    try:
        if isinstance(path, str) and "://" in path:
            import pyarrow.fs as pafs

            fs, key = pafs.FileSystem.from_uri(path)
            with fs.open_input_file(key) as stream:
                text = bytes(stream.read()).decode()
        else:
            text = Path(path).read_text()
        entries = json.loads(text)["trial_data"]
        states = (json.loads(e[0]) if isinstance(e[0], str) else e[0] for e in entries)
        return {str(state["trial_id"]): str(state["status"]) for state in states}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def ot_study(search: Any) -> Any:
    """The Optuna study of a ``ray.tune.search.optuna.OptunaSearch`` (None before set-up)."""
    return _guard("ray-optuna-search", lambda: search._ot_study)


def ot_trials(search: Any) -> dict[str, Any]:
    """Tune trial id -> ``optuna.Trial`` of an OptunaSearch: its own dict (changes stay)."""
    trials: dict[str, Any] = _guard("ray-optuna-search", lambda: search._ot_trials)
    return trials


def completed_trials(search: Any) -> set[str]:
    done: set[str] = _guard("ray-optuna-search", lambda: search._completed_trials)
    return done


def search_metric(search: Any) -> str | None:
    return _guard("ray-optuna-search", lambda: search._metric)


def stop_tune_run() -> None:
    """End the Tune run of this (main) thread as Ctrl-C does: Tune saves its experiment state with
    the unfinished trials as they are (resumable), not marked finished as a Stopper's ``stop_all``
    leaves them. Tune catches SIGUSR1 for this while ``fit`` runs in the main thread."""
    import signal

    def check() -> None:
        from ray.tune import tune as tune_module

        if not callable(tune_module._setup_signal_catching):
            raise AttributeError("_setup_signal_catching is not a function")

    _guard("ray-tune-stop-signal", check)
    signal.raise_signal(signal.SIGUSR1)
