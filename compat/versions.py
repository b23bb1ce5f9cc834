"""The installed versions against the supported ones (:mod:`compat.supported`), read from the
packages' metadata without importing them (milliseconds: every ``study`` command checks first)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import metadata

from compat.supported import PAIRINGS, SUPPORTED, Supported

ALLOW_ENV = "BSS_STUDY_ALLOW_UNTESTED"  # "1": a version outside the range is a warning, not a refusal


class VersionError(RuntimeError):
    """An installed dependency outside the supported range (one line naming it and the fix)."""


def installed(dependency: str) -> str | None:
    try:
        return metadata.version(dependency)
    except metadata.PackageNotFoundError:
        return None


def release(version: str) -> tuple[int, ...]:
    """``2.4.1+cu121`` -> (2, 4, 1); ``2.15.0.dev20260101`` -> (2, 15, 0); ``3.0.0rc1`` -> (3, 0, 0)."""
    parts: list[int] = []
    for piece in version.split("+")[0].split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) < len(piece):  # 0rc1, 0a2: the release ends here
            break
    return tuple(parts)


def within(version: str, supported: Supported) -> bool:
    """As pyproject admits them: ``min``'s minor through ``max``'s minor (majors where releases are majors)."""
    n = 1 if supported.by_major else 2
    return release(supported.min)[:n] <= release(version)[:n] <= release(supported.max)[:n]


def older(version: str, than: str) -> bool:
    return release(version) < release(than)


def describe(supported: Supported) -> str:
    return f"{supported.range} (tested {supported.min} to {supported.max})"


def problems(names: Iterable[str] | None = None) -> list[str]:
    """One line for each dependency in ``names`` (default: all) that is missing or outside its range,
    and for each pairing it breaks."""
    found: list[str] = []
    chosen = list(SUPPORTED) if names is None else [n for n in names if n in SUPPORTED]
    for name in chosen:
        supported = SUPPORTED[name]
        version = installed(name)
        pip = f"pip install '{supported.requirement}{supported.range}'"
        if version is None:
            found.append(f"{name} is not installed: {pip}")
        elif not within(version, supported):
            found.append(f"{name} {version} is outside the supported range {describe(supported)}: {pip}")
    for pair in PAIRINGS:
        if pair.dependency not in chosen:
            continue
        version, other = installed(pair.dependency), installed(pair.other)
        if version and other and older(version, pair.before) and not older(other, pair.other_before):
            found.append(
                f"{pair.dependency} {version} needs {pair.other} older than {pair.other_before} ({pair.why}; "
                f"installed: {other}): pip install '{pair.other}<{pair.other_before}'"
            )
    return found


def check(names: Iterable[str] | None = None) -> list[str]:
    """Raise :class:`VersionError` with the first problem (all of them counted) unless
    ``BSS_STUDY_ALLOW_UNTESTED=1``, in which case the problems are returned for a warning."""
    found = problems(names)
    if not found or os.environ.get(ALLOW_ENV) == "1":
        return found
    more = f" (and {len(found) - 1} more: run `study versions`)" if len(found) > 1 else ""
    raise VersionError(f"{found[0]}{more}; or set {ALLOW_ENV}=1 to run an untested version at your own risk")
