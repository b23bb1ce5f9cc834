"""The numbers of ``study report``, grouped like with like (drawing lives in :mod:`study.reporting.report`).

Every trial's config is the one it ran with (:mod:`study.record.trial_config`; the settings that
act on it), and trials are grouped by equality of everything but what a summary varies:

- a Table-2 cell: trials equal except for the seed (a row) at one sampling rate (a column);
- the BSS gain: a BSS trial paired with the trial equal to it except for ``bss.*`` (same seed);
- a Fig. 3(d) line: BSS trials equal except for ``bss.k`` and the seed, one line per rate;
- a Table-3 row (a task sequence): trials equal except for the seed; its BSS difference per
  column pairs each BSS trial with its partner without BSS, as the gain does.

A trial that did not run to the end (stopped early, failed) still counts in its cell's expected
number, so a cell that lost trials says so ("3 of 5"); a gain counts its pairs against the BSS
trials of its configuration ("pairs 2 of 3") and says which seed lost its partner and why. Two
trials of the same resolved config and seed are one seed, not two: one is kept (the one that ran to
the end, then the latest) and the others listed (:func:`dedupe`).

Inference (:mod:`study.reporting.stats`): every mean carries a 95 % interval (t, or a seeded bootstrap) from
3 values on; every paired comparison has the exact sign-flip p (defined for any n) beside the
paired t-test's (or why that is undefined), and each table is one family whose p-values are
adjusted together (Holm by default, Benjamini-Hochberg as an option).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from finetune.config import applicable_params
from study.record import SPECTRUM_COLUMNS, params_text, row_config, row_params
from study.reporting import stats
from study.reporting.model import (
    C,
    Cell,
    Comparison,
    ConfirmedRow,
    Duplicate,
    Gain,
    Key,
    Line,
    PairGroup,
    Reference,
    ReportData,
    ReportOptions,
    Row,
    SpectrumShift,
    TaskGain,
    TaskRow,
    Trial,
)
from study.spec import StudyError


def trials_from_table(
    rows: Sequence[dict[str, Any]], base: dict[str, Any], study_dir: Path | None = None
) -> list[Trial]:
    """Every row of ``trials.parquet`` as a :class:`Trial`, with the config it ran with (its saved
    ``config.yaml`` under ``study_dir``; rebuilt from its parameters without a folder or file)."""
    trials = []
    for index, row in enumerate(rows):
        config = applicable_params(row_config(study_dir, row, base))
        ran = row["status"] == "finished" and not row.get("early_stopped") and row.get("test_acc") is not None
        spectrum = tuple(float(row[c]) for c in SPECTRUM_COLUMNS if row.get(c) is not None) if ran else ()
        accs, learned = (_numbered(row, "task_acc_"), _numbered(row, "task_learned_acc_")) if ran else ((), ())
        status = "stopped early" if row.get("early_stopped") else str(row["status"])
        number = row.get("optuna_trial_number")
        order = (int(number) if number is not None else -1, index)
        trials.append(
            Trial(
                str(row["trial_id"]),
                config,
                float(row["test_acc"]) if ran else None,
                spectrum,
                accs,
                learned,
                status,
                order,
                row.get("digest_train"),
                int(row["n_test"]) if row.get("n_test") else None,
                float(row["ended_at"]) if row.get("ended_at") is not None else None,
            )
        )
    return trials


def check_same_data(trials: Sequence[Trial]) -> None:
    """Trials of the same data settings and seed must have drawn the same training images (a BSS
    trial and its partner, a trial and its duplicate); their digests saying otherwise (the dataset
    changed between them, two studies on two copies merged) is one line naming two of them."""
    seen: dict[Key, Trial] = {}
    for t in trials:
        if t.digest is None:
            continue
        key = t.key(lambda k: not (k.startswith("data.") or k == "seed"))
        first = seen.setdefault(key, t)
        if first.digest != t.digest:
            raise StudyError(
                f"trials.parquet: trials {first.trial_id} and {t.trial_id} have the same data settings and seed "
                f"({t.dataset}, {100 * t.rate:g}%, seed {t.seed}) but drew different training images (digests "
                f"{str(first.digest)[:12]}... and {str(t.digest)[:12]}...): the data changed between them; run them "
                "again on one copy of the data"
            )


def dedupe(trials: Sequence[Trial]) -> tuple[list[Trial], list[Duplicate]]:
    """One trial per resolved config and seed (a re-run, a resumed duplicate, two studies merged
    would otherwise pool as extra seeds or overwrite each other as partners): the one that ran to
    the end, then the latest to end (its last result's time; Optuna trial numbers are not time
    across merged studies; the number, then the table row, only where no end time was recorded);
    the others are returned."""
    groups: dict[Key, list[Trial]] = defaultdict(list)
    for t in trials:
        groups[t.key(lambda _: False)].append(t)
    kept, duplicates = [], []
    for members in groups.values():
        best = max(members, key=lambda t: (t.test_acc is not None, t.recency))
        kept.append(best)
        if len(members) > 1:
            others = tuple(sorted(t.trial_id for t in members if t is not best))
            duplicates.append(Duplicate(best.trial_id, others, best.seed))
    order = {id(t): i for i, t in enumerate(trials)}
    return sorted(kept, key=lambda t: order[id(t)]), sorted(duplicates, key=lambda d: d.kept)


def _numbered(row: dict[str, Any], prefix: str) -> tuple[float, ...]:
    """``prefix1``, ``prefix2``, ... of a row, in order, up to the first missing one."""
    values: list[float] = []
    while row.get(f"{prefix}{len(values) + 1}") is not None:
        values.append(float(row[f"{prefix}{len(values) + 1}"]))
    return tuple(values)


def _except(*names: str) -> Callable[[str], bool]:
    return lambda key: key in names or any(key.startswith(n) for n in names if n.endswith("."))


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _labels(
    groups: Iterable[tuple[Key, Trial]], name: Callable[[Trial], str], shown: Sequence[str] = ()
) -> dict[Key, str]:
    """``name`` of each group's trial, plus the settings in which groups of the same name differ
    (but the seed and the settings ``shown`` elsewhere, e.g. the rate in its own column)."""
    by_name: dict[str, list[tuple[Key, Trial]]] = defaultdict(list)
    for key, trial in groups:
        by_name[name(trial)].append((key, trial))
    labels = {}
    for base, members in by_name.items():
        names = {k for _, t in members for k in t.config} - {"seed", *shown}
        varying = sorted(k for k in names if len({repr(t.config.get(k)) for _, t in members}) > 1)
        for key, trial in members:
            extra = ", ".join(f"{_short(k)}={trial.config.get(k)}" for k in varying)
            labels[key] = f"{base}({extra})" if extra else base
    return labels


def table2_rows(trials: Sequence[Trial], options: ReportOptions | None = None) -> list[Row]:
    leave_out = _except("seed", "data.sampling_rate")
    groups: dict[Key, dict[float, list[Trial]]] = defaultdict(lambda: defaultdict(list))
    for t in trials:
        groups[t.key(leave_out)][t.rate].append(t)
    first = {key: next(iter(cells.values()))[0] for key, cells in groups.items()}
    labels = _labels(first.items(), lambda t: t.method, shown=("data.sampling_rate",))
    rows = [
        Row(
            first[key].dataset,
            labels[key],
            {rate: Cell.of(members, options=options) for rate, members in cells.items()},
            first[key].method,
            {k: v for k, v in first[key].config.items() if k not in ("seed", "data.sampling_rate")},
        )
        for key, cells in groups.items()
    ]
    return sorted(rows, key=lambda r: (r.dataset, r.label))


def confirmation_rows(
    studies: Sequence[tuple[int, dict[str, Any], list[Trial]]], options: ReportOptions | None = None
) -> list[ConfirmedRow]:
    """Per confirmed configuration (rank, the search's trial row, the confirmation's trials): the
    cell over the fresh seeds, the partner's cell and the BSS gain paired by seed; the gains of all
    ranks are one family."""
    options = options or ReportOptions()
    found = []
    for rank, selected, trials in studies:
        trials, _ = dedupe(trials)
        with_bss = [t for t in trials if t.bss]
        own = with_bss or trials
        gains = bss_gains(trials, options) if with_bss else []
        params = params_text({k: v for k, v in sorted(row_params(selected).items()) if k != "seed"}, _short)
        label = own[0].method + (f" ({params})" if params else "")
        found.append(
            ConfirmedRow(
                rank,
                label,
                selected.get("best_val_acc"),
                selected.get("test_acc"),
                Cell.of(own, options=options),
                Cell.of([t for t in trials if not t.bss], options=options) if with_bss else None,
                gains[0] if gains else None,
            )
        )
    adjusted = iter(_adjusted([r.gain for r in found if r.gain is not None], options))
    return [replace(r, gain=next(adjusted)) if r.gain is not None else r for r in found]


def references(rows: Sequence[Row]) -> list[Reference]:
    """Every cell whose dataset, backbone, method and rate have published numbers from a source
    whose protocol the row ran under and whose published settings (BSS's k and eta) it has; other
    settings may differ, and the row's label names them."""
    from study.reporting.references import published

    found = []
    for row in rows:
        protocol = str(row.config.get("protocol", "custom"))
        for rate, cell in sorted(row.cells.items()):
            numbers = published(row.dataset, row.backbone, row.method, rate, protocol, row.config)
            if numbers and cell.mean is not None:
                found.append(Reference(row.dataset, row.method, rate, cell, numbers, row.label, protocol))
    return found


def bss_pairs(
    trials: Sequence[Trial],
    name: Callable[[Trial], str] = lambda t: t.method,
    value: Callable[[Trial], object] = lambda t: t.test_acc,
    missing: str = "has no test accuracy",
) -> tuple[dict[Key, PairGroup], dict[Key, str]]:
    """Each BSS trial with its partner without BSS (equal but for ``bss.*``, same seed), grouped by
    configuration but the seed, and each group's row label (``name`` of its BSS trial). A pair
    needs ``value`` of both; a BSS trial without one is listed with the reason."""

    def has(t: Trial) -> bool:
        v = value(t)
        return v is not None and v != ()

    partners = {t.key(_except("bss.")): t for t in trials if not t.bss}
    partner_seeds: dict[Key, set[int]] = defaultdict(set)
    for t in trials:
        if not t.bss and has(t):
            partner_seeds[t.key(_except("bss.", "seed"))].add(t.seed)
    groups: dict[Key, PairGroup] = defaultdict(PairGroup)
    for t in sorted((t for t in trials if t.bss), key=lambda t: t.seed):
        group = groups[t.key(_except("seed"))]
        group.bss.append(t)
        group.partner_seeds = partner_seeds.get(t.key(_except("bss.", "seed")), set())
        partner = partners.get(t.key(_except("bss.")))
        if not has(t):
            group.unpaired.append(f"seed {t.seed}: the BSS trial {_why(t, missing)}")
        elif partner is None:
            group.unpaired.append(f"seed {t.seed}: no trial without BSS")
        elif not has(partner):
            group.unpaired.append(f"seed {t.seed}: its partner without BSS {_why(partner, missing)}")
        else:
            group.pairs.append((t, partner))
    groups = {key: g for key, g in groups.items() if g.pairs}
    example = {key: g.pairs[0][0] for key, g in groups.items()}
    return groups, _labels(example.items(), name, shown=("data.sampling_rate",))


def _why(t: Trial, missing: str) -> str:
    return missing if t.status == "finished" else f"did not run to the end ({t.status})"


def _seeds_note(group: PairGroup) -> str:
    """How the gain's seeds differ from those of the two Table-2 cells beside it ('' : the same)."""
    paired = {a.seed for a, _ in group.pairs}
    cell = {t.seed for t in group.bss if t.test_acc is not None}
    notes = []
    if cell != paired:
        notes.append(f"the BSS cell also averages seeds {_seeds(cell - paired)}")
    if group.partner_seeds != paired:
        notes.append(f"the cell without BSS also averages seeds {_seeds(group.partner_seeds - paired)}")
    return "; ".join(notes)


def _seeds(seeds: Iterable[int]) -> str:
    return ", ".join(str(s) for s in sorted(seeds))


def bss_gains(trials: Sequence[Trial], options: ReportOptions | None = None) -> list[Gain]:
    options = options or ReportOptions()
    groups, labels = bss_pairs(trials)
    gains = []
    for key, group in groups.items():
        d = [float(a.test_acc) - float(b.test_acc) for a, b in group.pairs]  # type: ignore[arg-type]
        t = group.pairs[0][0]
        tie = min(x.tie for pair in group.pairs for x in pair)
        c = Comparison.of(d, len(group.bss), group.unpaired, options, tie)
        gains.append(Gain(**vars(c), dataset=t.dataset, method=labels[key], rate=t.rate, seeds_note=_seeds_note(group)))
    return _adjusted(sorted(gains, key=lambda g: (g.dataset, g.method, g.rate)), options)


def _adjusted(family: list[C], options: ReportOptions) -> list[C]:
    """The family with each member's sign-flip p adjusted over all of them, and the smallest
    adjusted p each could reach at its number of pairs."""
    adjusted = stats.adjust([c.p_sign for c in family], options.correction)
    floors = stats.adjusted_floors([c.n_pairs for c in family], options.correction)
    return [replace(c, p_adjusted=p, p_floor=floor) for c, p, floor in zip(family, adjusted, floors, strict=True)]


def fig3d_lines(trials: Sequence[Trial], options: ReportOptions | None = None) -> dict[tuple[str, str], list[Line]]:
    """Accuracy against k per rate; the line's baseline (its trials without BSS, otherwise equal
    but for the seed) is drawn at k = 0 when the study ran it."""
    groups: dict[Key, dict[int, list[Trial]]] = defaultdict(lambda: defaultdict(list))
    for t in trials:
        if t.k is not None:
            groups[t.key(_except("seed", "bss.k"))][t.k].append(t)
    groups = {key: ks for key, ks in groups.items() if len(ks) > 1}  # a line needs two values of k
    first = {key: next(iter(ks.values()))[0] for key, ks in groups.items()}
    baselines: dict[Key, list[Trial]] = defaultdict(list)
    for t in trials:
        if not t.bss:
            baselines[t.key(_except("seed", "bss."))].append(t)
    labels = _labels(first.items(), lambda t: f"{100 * t.rate:g}%", shown=("bss.k",))
    panels: dict[tuple[str, str], list[Line]] = defaultdict(list)
    for key, ks in groups.items():
        t = first[key]
        cells = {k: Cell.of(m, options=options) for k, m in ks.items()}
        baseline = baselines.get(t.key(_except("seed", "bss.")))
        if baseline:
            cells[0] = Cell.of(baseline, options=options)
        panels[(t.dataset, t.base_method)].append(Line(t.rate, labels[key], cells))
    return {panel: sorted(lines, key=lambda line: (line.rate, line.label)) for panel, lines in sorted(panels.items())}


def spectrum_shifts(trials: Sequence[Trial], options: ReportOptions | None = None) -> list[SpectrumShift]:
    """For every BSS configuration with partners: the change of each reported smallest singular
    value (does BSS shrink more than the k it penalises? Fig. 1c-d, 3b-c)."""
    options = options or ReportOptions()
    groups, labels = bss_pairs(trials, value=lambda t: t.spectrum, missing="has no recorded spectrum")
    shifts = []
    for key, group in groups.items():
        members = group.pairs
        t = members[0][0]
        for i in range(min(len(a.spectrum) for pair in members for a in pair)):
            diffs = [a.spectrum[i] - b.spectrum[i] for a, b in members]
            ratios = [a.spectrum[i] / b.spectrum[i] - 1 for a, b in members if b.spectrum[i] > 0]
            change = statistics.fmean(ratios) if ratios else float("nan")
            c = Comparison.of(diffs, len(group.bss), group.unpaired, options)
            shifts.append(
                SpectrumShift(
                    **vars(c), dataset=t.dataset, method=labels[key], rate=t.rate, index=i + 1, relative_change=change
                )
            )
    return _adjusted(sorted(shifts, key=lambda s: (s.dataset, s.method, s.rate, s.index)), options)


def task_name(index: int) -> str:
    """0 -> "task A", 1 -> "task B", ... (the paper's names)."""
    return f"task {chr(ord('A') + index)}" if index < 26 else f"task {index + 1}"


def task_values(count: int) -> dict[str, Callable[[Trial], float | None]]:
    """Table 3's columns for a sequence of ``count`` tasks: the test accuracy on each task after the
    last one, their average (the trial's test_acc), and how much task A lost after its own training."""

    def acc(i: int) -> Callable[[Trial], float | None]:
        return lambda t: t.task_accs[i] if len(t.task_accs) > i else None

    def forgotten(t: Trial) -> float | None:
        return t.learned_accs[0] - t.task_accs[0] if t.learned_accs and t.task_accs else None

    return {**{task_name(i): acc(i) for i in range(count)}, "average": lambda t: t.test_acc, "A forgotten": forgotten}


def _sequence_label(t: Trial) -> str:
    """The method in the paper's words: L2 at alpha 0 is plain fine-tuning."""
    plain = t.base_method == "l2" and float(t.config.get("regularizer.alpha", 0.0)) == 0.0
    return ("fine-tuning" if plain else t.base_method) + (" + EWC" if t.ewc else "") + (" + BSS" if t.bss else "")


def table3(
    trials: Sequence[Trial], options: ReportOptions | None = None
) -> tuple[list[str], list[TaskRow], list[TaskGain]]:
    """Table 3 from the trials of task sequences: (columns, rows, BSS differences per column)."""
    sequences = [t for t in trials if "tasks.count" in t.config]
    if not sequences:
        return [], [], []
    options = options or ReportOptions()
    count = max(int(t.config["tasks.count"]) for t in sequences)
    columns = task_values(count)
    groups: dict[Key, list[Trial]] = defaultdict(list)
    for t in sequences:
        groups[t.key(_except("seed"))].append(t)
    first = {key: members[0] for key, members in groups.items()}
    labels = _labels(first.items(), _sequence_label)
    rows = [
        TaskRow(
            first[key].dataset,
            labels[key],
            {name: Cell.of(members, value, options) for name, value in columns.items()},
        )
        for key, members in sorted(groups.items(), key=lambda item: _sequence_order(first[item[0]], labels[item[0]]))
    ]
    pair_groups, pair_labels = bss_pairs(sequences, _sequence_label)
    gains = []
    ordered = sorted(pair_groups.items(), key=lambda item: _sequence_order(item[1].pairs[0][0], pair_labels[item[0]]))
    for key, group in ordered:
        for name, value in columns.items():
            d = [
                float(va) - float(vb)
                for va, vb in ((value(a), value(b)) for a, b in group.pairs)
                if va is not None and vb is not None
            ]
            if d:
                t = group.pairs[0][0]
                tie = stats.DEFAULT_TIE  # a task's own test split size is not recorded
                c = replace(
                    Comparison.of(d, len(group.bss), group.unpaired, options, tie), harmful=HARMFUL.get(name, -1)
                )
                gains.append(TaskGain(**vars(c), dataset=t.dataset, label=pair_labels[key], column=name))
    return list(columns), rows, _adjusted(gains, options)


HARMFUL = {"A forgotten": 1}  # Table 3's columns where more is worse (-1, less accuracy, elsewhere)


def _sequence_order(t: Trial, label: str) -> tuple[Any, ...]:
    """Table 3's row order: per dataset, without EWC first, then by lambda; without BSS first."""
    lam = float(t.config["ewc.lam"]) if t.ewc else 0.0
    return (t.dataset, t.base_method, t.ewc, lam, t.bss, label)


def pareto_front(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials that ran to the end, cheapest first, each more accurate than every cheaper one."""
    ran = [r for r in rows if r.get("test_acc") is not None and r.get("device_s") is not None]
    front: list[dict[str, Any]] = []
    for row in sorted(ran, key=lambda r: (float(r["device_s"]), -float(r["test_acc"]))):
        if not front or float(row["test_acc"]) > float(front[-1]["test_acc"]):
            front.append(row)
    return front


def cost_front(data: ReportData, rows: Sequence[dict[str, Any]], metric: str) -> None:
    """Fill ``data``'s accuracy-against-compute numbers from the table's rows (the study chose by ``metric``)."""
    ranked = [r for r in rows if r.get(metric) is not None]
    selected = str(max(ranked, key=lambda r: float(r[metric]))["trial_id"]) if ranked else None
    data.cost = [
        {
            "trial_id": str(r["trial_id"]),
            "device_s": float(r["device_s"]),
            "test_acc": float(r["test_acc"]),
            "searched": params_text(row_params(r)),
            "mark": "selected" if r["trial_id"] == selected else "",
        }
        for r in pareto_front(rows)
    ]
    data.cost_selected = selected
    data.cost_total_hours = sum(float(r.get("device_s") or 0.0) for r in rows) / 3600
    data.cost_unit = "GPU-hours" if any(r.get("device_gpu") for r in rows) else "CPU-hours"


def report_data(trials: Sequence[Trial], options: ReportOptions | None = None) -> ReportData:
    options = options or ReportOptions()
    check_same_data(trials)
    trials, duplicates = dedupe(trials)
    task_columns, task_rows, task_gains = table3(trials, options)
    rows = table2_rows(trials, options)
    return ReportData(
        rates=sorted({t.rate for t in trials}),
        rows=rows,
        references=references(rows),
        gains=bss_gains(trials, options),
        spectra=spectrum_shifts(trials, options),
        fig3d=fig3d_lines(trials, options),
        task_columns=task_columns,
        table3=task_rows,
        task_gains=task_gains,
        n_trials=sum(t.test_acc is not None for t in trials),
        n_rows=len(trials),
        duplicates=duplicates,
        options=options,
    )
