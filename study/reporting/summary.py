"""``summary.parquet``: every number of the report's tables, one typed row each, for analysis outside the report."""

from __future__ import annotations

from typing import Any

from study.reporting.model import Cell, Comparison, ReportData

SUMMARY_COLUMNS = (
    "table", "dataset", "method", "rate", "k", "column", "mean", "std", "n", "expected",
    "ci_low", "ci_high", "p_t", "p_sign", "p_adjusted",
)  # fmt: skip


def summary_table(data: ReportData) -> Any:
    """Every number of the report's tables as a row (fractions, not %; unrounded): ``table`` is
    ``table2``, ``gains``, ``fig3d``, ``spectra``, ``table3``, ``task_gains`` or ``references`` (a published
    number: ``column`` is its source)."""
    import pyarrow as pa

    rows: list[dict[str, Any]] = []

    def cell(table: str, c: Cell, **where: Any) -> None:
        low, high = c.interval or (None, None)
        rows.append({"table": table, **where, "mean": c.mean, "std": c.std, "n": c.n, "expected": c.expected,
                     "ci_low": low, "ci_high": high})  # fmt: skip

    def comparison(table: str, c: Comparison, mean: float, **where: Any) -> None:
        low, high = c.interval or (None, None)
        rows.append({"table": table, **where, "mean": mean, "n": c.n_pairs, "expected": c.n_expected,
                     "ci_low": low, "ci_high": high, "p_t": c.p_value, "p_sign": c.p_sign,
                     "p_adjusted": c.p_adjusted})  # fmt: skip

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
            "spectra", s, s.relative_change, dataset=s.dataset, method=s.method, rate=s.rate, column=f"s_{s.index}"
        )
    for task_row in data.table3:
        for column, c in task_row.cells.items():
            cell("table3", c, dataset=task_row.dataset, method=task_row.label, column=column)
    for ref in data.references:
        for source, value in ref.published.items():
            rows.append({"table": "references", "dataset": ref.dataset, "method": ref.method, "rate": ref.rate,
                         "column": source, "mean": value})  # fmt: skip
    for tg in data.task_gains:
        comparison("task_gains", tg, tg.mean_gain, dataset=tg.dataset, method=tg.label, column=tg.column)
    types = {"table": pa.string(), "dataset": pa.string(), "method": pa.string(), "column": pa.string(),
             "k": pa.int64(), "n": pa.int64(), "expected": pa.int64()}  # fmt: skip
    return pa.table(
        {name: pa.array([r.get(name) for r in rows], types.get(name, pa.float64())) for name in SUMMARY_COLUMNS}
    )
