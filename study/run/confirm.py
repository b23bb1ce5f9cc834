"""Running a search's confirmation studies (its top configurations on fresh seeds): each a grid
study of its own, launched or resumed in turn. What they are and what they found is the record's
(:mod:`study.record.confirmations`)."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from study.record import StudyFolder, confirmation_specs, trials_table_state
from study.spec import StudySpec


def run_confirmation(spec: StudySpec, out: IO[str] | None = None) -> bool:
    """Launch or resume each confirmation study (Ray running, the search complete); True when all
    of them ran to the end."""
    from study.record import choose, driver_lock
    from study.run.driver import check_resumable, resume_study, run_study

    complete = True
    for sub in confirmation_specs(spec):
        folder = StudyFolder(sub.study_dir)
        if trials_table_state(folder) == "ok":
            continue
        choice = choose(sub.tracking_uri, sub.optuna_storage, sub.study_dir, Path.cwd())
        stores = choice.open(sub.study_dir)
        print(
            f"confirming {sub.name}: {sub.num_samples} trials on fresh seeds -> {sub.study_dir}", file=out, flush=True
        )
        with driver_lock(sub.study_dir, stores.optuna_url, sub.name):
            if folder.record_file.is_file():
                outcome = resume_study(check_resumable(sub.study_dir), out)
            else:
                outcome = run_study(sub, choice, out)
        complete = complete and not outcome.interrupted
        if outcome.interrupted:
            break
    return complete
