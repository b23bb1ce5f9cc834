"""YAML as a spec or config may be written: plain data, each key once, nothing that expands.

:func:`load` is PyYAML's safe loader (no ``!!python/...`` tags: they construct nothing) made
stricter: a key given twice in one mapping is refused (a later duplicate silently winning hides a
typo), so are anchors and aliases (``&a`` / ``*a``: an alias bomb, "billion laughs", expands a few
hundred bytes into billions of values), and a text over :data:`MAX_BYTES`. Every refusal is a
:class:`YamlRefused` whose message is one line naming where, for the caller to prefix with the file.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

MAX_BYTES = 1 << 20  # 1 MiB: a study spec or a run config is a few kilobytes


class YamlRefused(ValueError):
    """The text is not YAML this project reads (one line: what, where, the fix)."""


class _StrictLoader(yaml.SafeLoader):
    def compose_node(self, parent: Node | None, index: object) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlRefused(
                f"line {event.start_mark.line + 1}: an alias (*{event.anchor}) is not accepted; write the values out"
            )
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise YamlRefused(
                f"line {event.start_mark.line + 1}: an anchor (&{anchor}) is not accepted; write the values out"
            )
        return super().compose_node(parent, index)  # type: ignore[arg-type]

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                raise ConstructorError(None, None, "an unhashable key", key_node.start_mark) from None
            line = key_node.start_mark.line + 1
            if first is not None:
                raise YamlRefused(f"line {line}: key {key!r} is given twice (first on line {first}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> Any:
    """The data of ``text``; raises :class:`YamlRefused` (or ``yaml.YAMLError`` for text that is
    not YAML at all) with a one-line message."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise YamlRefused(
            f"{len(text.encode('utf-8', errors='replace')):,} bytes, over the {MAX_BYTES:,} a spec or config may "
            "have; a spec is a few kilobytes (is this the right file?)"
        )
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except ConstructorError as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark is not None else ""
        tag = re.search(r"tag '([^']+)'", exc.problem or "")
        if tag:
            shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
            raise YamlRefused(f"{where}the tag {shown} is not accepted (plain values only); remove it") from None
        raise YamlRefused(f"{where}{exc.problem}") from None
