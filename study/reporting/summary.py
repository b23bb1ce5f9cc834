"""``summary.parquet``: every number of the report's tables, one typed row each, for analysis outside the report."""

from __future__ import annotations

from typing import Any

from study.reporting.model import Cell, Comparison, ReportData

SUMMARY_COLUMNS = (
    "table", "dataset", "method", "rate", "k", "column", "mean", "std", "n", "expected",
    "ci_low", "ci_high", "p_t", "p_sign", "p_adjusted", "p_sign_method", "p_floor", "negative_transfer", "why",
    "protocol", "rank", "hours", "selected",
)  # fmt: skip


def summary_table(data: ReportData) -> Any:
    """Every number of the report's tables as a row (fractions, not %; unrounded): ``table`` is
    ``table2``, ``gains``, ``fig3d``, ``spectra``, ``table3``, ``task_gains``, ``references`` (a published
    number: ``column`` is its source, or ``<source> - this study`` its difference from the cell's mean;
    ``protocol`` the row's), ``confirmation`` (``column``: ``selected val``, ``selected test``,
    ``with BSS``, ``without BSS``; ``rank``), ``confirmation_gains`` or ``cost`` (the
    accuracy-against-compute front: ``column`` the trial, ``mean`` its test accuracy, ``hours`` its
    device-hours, ``method`` its searched settings, ``selected`` whether the study chose it; ``column``
    ``total``: the study's device-hours). ``why`` says why an interval or p is undefined;
    ``negative_transfer`` is each gain's verdict."""
    import pyarrow as pa

    rows: list[dict[str, Any]] = []

    def cell(table: str, c: Cell, **where: Any) -> None:
        low, high = c.interval or (None, None)
        rows.append({"table": table, **where, "mean": c.mean, "std": c.std, "n": c.n, "expected": c.expected,
                     "ci_low": low, "ci_high": high, "why": c.interval_why or None})  # fmt: skip

    def comparison(table: str, c: Comparison, mean: float, gain: bool = True, **where: Any) -> None:
        low, high = c.interval or (None, None)
        why = "; ".join(w for w in (c.interval_why and f"interval: {c.interval_why}", c.p_why and f"t: {c.p_why}") if w)
        rows.append({"table": table, **where, "mean": mean, "n": c.n_pairs, "expected": c.n_expected,
                     "ci_low": low, "ci_high": high, "p_t": c.p_value, "p_sign": c.p_sign,
                     "p_adjusted": c.p_adjusted, "p_sign_method": c.p_sign_method, "p_floor": c.p_floor,
                     "negative_transfer": c.verdict() if gain else None, "why": why or None})  # fmt: skip

    for row in data.rows:
        for rate, c in row.cells.items():
            cell("table2", c, dataset=row.dataset, method=row.label, rate=rate)
    for g in data.gains:
        comparison("gains", g, g.mean_gain, dataset=g.dataset, method=g.method, rate=g.rate)
    for (dataset, method), lines in data.fig3d.items():
        for line in lines:
            for k, c in line.cells.items():
                cell("fig3d", c, dataset=dataset, method=f"{method} {line.label}", rate=line.rate, k=k)
    for s in data.spectra:
        comparison(
            "spectra",
            s,
            s.relative_change,
            False,
            dataset=s.dataset,
            method=s.method,
            rate=s.rate,
            column=f"s_{s.index}",
        )
    for task_row in data.table3:
        for column, c in task_row.cells.items():
            cell("table3", c, dataset=task_row.dataset, method=task_row.label, column=column)
    for ref in data.references:
        for source, value in ref.published.items():
            where = {"table": "references", "dataset": ref.dataset, "method": ref.label, "rate": ref.rate,
                     "protocol": ref.protocol}  # fmt: skip
            rows.append({**where, "column": source, "mean": value})
            rows.append({**where, "column": f"{source} - this study", "mean": value - float(ref.cell.mean or 0.0)})
    for tg in data.task_gains:
        comparison("task_gains", tg, tg.mean_gain, dataset=tg.dataset, method=tg.label, column=tg.column)
    for r in data.confirmation:
        for name, chosen in (("selected val", r.selected_val), ("selected test", r.selected_test)):
            rows.append({"table": "confirmation", "method": r.label, "rank": r.rank, "column": name, "mean": chosen})
        cell("confirmation", r.cell, method=r.label, rank=r.rank, column="with BSS" if r.gain else "confirmed")
        if r.partner is not None:
            cell("confirmation", r.partner, method=r.label, rank=r.rank, column="without BSS")
        if r.gain is not None:
            comparison("confirmation_gains", r.gain, r.gain.mean_gain, method=r.label, rank=r.rank, rate=r.gain.rate)
    for point in data.cost:
        rows.append({"table": "cost", "column": str(point["trial_id"]), "mean": point["test_acc"],
                     "hours": float(point["device_s"]) / 3600, "method": point["searched"],
                     "selected": point["mark"] == "selected"})  # fmt: skip
    if data.cost:
        rows.append({"table": "cost", "column": "total", "hours": data.cost_total_hours})
    types = {"table": pa.string(), "dataset": pa.string(), "method": pa.string(), "column": pa.string(),
             "k": pa.int64(), "n": pa.int64(), "expected": pa.int64(), "p_sign_method": pa.string(),
             "negative_transfer": pa.string(), "why": pa.string(), "protocol": pa.string(), "rank": pa.int64(),
             "selected": pa.bool_()}  # fmt: skip
    return pa.table(
        {name: pa.array([r.get(name) for r in rows], types.get(name, pa.float64())) for name in SUMMARY_COLUMNS}
    )
