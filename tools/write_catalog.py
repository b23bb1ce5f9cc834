"""Write ``finetune/catalog.py``: every registry's field, kind, names and descriptions as plain
data, so that ``study list`` prints them without importing torch (or anything else that fills the
registries). The registries stay the one source: ``tests/finetune/test_registry.py`` fails, naming
this command, when the catalog differs from what they hold.

    python tools/write_catalog.py        # or: make catalog
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TARGET = REPO / "finetune" / "catalog.py"

HEADER = '''# ruff: noqa: E501
"""Every registry's names and descriptions as plain data, for ``study list`` (no import of what
fills the registries). Written by ``python tools/write_catalog.py`` (``make catalog``) from the
registries themselves; a test fails when the two differ. Do not edit by hand."""

from __future__ import annotations

# (config field, kind, ((name, description), ...)), in the order a spec uses them
CATALOG: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
'''


def render() -> str:
    from study.cli.reading import registries

    lines = [HEADER]
    for registry in registries():
        lines.append(f"    (\n        {registry.field!r},\n        {registry.kind!r},\n        (\n")
        for name, description in registry.describe():
            lines.append(f"            ({name!r}, {description!r}),\n")
        lines.append("        ),\n    ),\n")
    lines.append(")\n")
    return "".join(lines)


def main() -> int:
    import subprocess

    TARGET.write_text(render())
    ruff = Path(sys.executable).parent / "ruff"  # the checked-in file is as `make lint` formats it
    if ruff.exists():
        subprocess.run([str(ruff), "format", "-q", str(TARGET)], check=True)
    print(f"wrote {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
