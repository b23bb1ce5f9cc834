"""Accuracy against compute: the trials no other trial beats on both test accuracy and the
device-hours it held (the Pareto front), with the study's selected trial marked (numbers:
:func:`study.reporting.data.cost_front`)."""

from __future__ import annotations

from study.reporting.sections.base import Context, Markdown, Nothing, Section


def render(context: Context) -> Markdown | Nothing:
    data = context.data
    if not data.cost:
        return Nothing("no trial recorded what it cost (device_s) and ran to the end.")
    unit = data.cost_unit
    ran = sum(r.get("test_acc") is not None for r in context.rows)
    lines = [
        f"Device-hours: the wall time of a trial's epochs times the share of a GPU it held (CPUs on a CPU), here "
        f"{unit}. Of {ran} trials that ran to the end, these {len(data.cost)} are not beaten on both test accuracy "
        f"and cost; `selected` is the trial the study chose (by {context.spec.metric}).",
        "",
        f"| trial | {unit} | test acc (%) | searched settings | |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in data.cost:
        hours, acc = float(r["device_s"]) / 3600, 100 * float(r["test_acc"])
        lines.append(f"| {r['trial_id']} | {hours:.4f} | {acc:.2f} | {r['searched']} | {r['mark']} |")
    if data.cost_selected is not None and data.cost_selected not in {r["trial_id"] for r in data.cost}:
        lines += [
            "",
            f"The selected trial {data.cost_selected} is not on the front: a cheaper trial is at least as accurate "
            "on test.",
        ]
    lines += ["", f"The study held {data.cost_total_hours:.4f} {unit} in all.", ""]
    return Markdown(lines)


SECTION = Section("## Accuracy against compute", render)
