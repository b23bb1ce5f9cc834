"""Accuracy against compute: the trials no other trial beats on both test accuracy and the
device-hours it held (the Pareto front), with the study's selected trial marked."""

from __future__ import annotations

from typing import Any

from study.record import params_text, row_params
from study.reporting.sections.base import Context, Markdown, Nothing, Section


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials that ran to the end, cheapest first, each more accurate than every cheaper one."""
    ran = [r for r in rows if r.get("test_acc") is not None and r.get("device_s") is not None]
    front: list[dict[str, Any]] = []
    for row in sorted(ran, key=lambda r: (float(r["device_s"]), -float(r["test_acc"]))):
        if not front or float(row["test_acc"]) > float(front[-1]["test_acc"]):
            front.append(row)
    return front


def render(context: Context) -> Markdown | Nothing:
    rows = list(context.rows)
    front = pareto_front(rows)
    if not front:
        return Nothing("no trial recorded what it cost (device_s) and ran to the end.")
    metric = str(context.spec.metric)
    ranked = [r for r in rows if r.get(metric) is not None]
    selected = max(ranked, key=lambda r: float(r[metric]))["trial_id"] if ranked else None
    unit = "GPU-hours" if any(r.get("device_gpu") for r in rows) else "CPU-hours"
    lines = [
        f"Device-hours: the wall time of a trial's epochs times the share of a GPU it held (CPUs on a CPU), here "
        f"{unit}. Of {sum(r.get('test_acc') is not None for r in rows)} trials that ran to the end, these "
        f"{len(front)} are not beaten on both test accuracy and cost; `selected` is the trial the study chose "
        f"(by {metric}).",
        "",
        f"| trial | {unit} | test acc (%) | searched settings | |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in front:
        params = params_text(row_params(r))
        mark = "selected" if r["trial_id"] == selected else ""
        hours, acc = float(r["device_s"]) / 3600, 100 * float(r["test_acc"])
        lines.append(f"| {r['trial_id']} | {hours:.4f} | {acc:.2f} | {params} | {mark} |")
    if selected is not None and selected not in {r["trial_id"] for r in front}:
        lines += [
            "",
            f"The selected trial {selected} is not on the front: a cheaper trial is at least as accurate on test.",
        ]
    total = sum(float(r.get("device_s") or 0.0) for r in rows) / 3600
    lines += ["", f"The study held {total:.4f} {unit} in all.", ""]
    return Markdown(lines)


SECTION = Section("## Accuracy against compute", render)
