"""The mapping a team can shape (SPEC section 10; configurable_mapping.md Part B): filters, renames and
routing read from the config, validated at start, and a digest that names the mapping in force.

Pure: parsing builds frozen values and collects problems, each naming its key; the mappers
(``sync.outbound.mapper``, ``sync.inbound.mapper``) read these values. No key set means SPEC sections 5 and 6 exactly.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

CALL_TYPES = ("identify", "track", "page", "screen", "alias")
SEND_MODES = ("all", "named", "categorized", "named_or_categorized", "none")
CALLS = ("track", "purchase", "cart")
PATH_ROOTS = ("type", "event", "name", "userId", "anonymousId", "properties", "traits", "context")
CONTEXT_KEYS = ("app", "campaign", "device", "ip", "locale", "location", "network", "os", "page", "referrer",
                "screen", "timezone", "userAgent")
IDENTIFIER_KEYS = ("email", "userId", "id")
PLACEHOLDERS = ("name", "category")
MAX_GLOB = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldRules:
    """allow (globs, empty: all) -> deny (globs) -> rename (exact source -> target), in that order."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict)


NO_RULES = FieldRules()


@dataclass(frozen=True, slots=True, kw_only=True)
class TraitRules(FieldRules):
    context_fields: tuple[str, ...] = ()
    drop_nulls: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DropRule:
    path: str
    glob: str | None = None
    equals: Any = None
    exists: bool | None = None
    has_equals: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    email_paths: tuple[str, ...] = ("traits.email", "properties.email", "context.traits.email")
    email_from_user_id: bool = True
    user_id_paths: tuple[str, ...] = ("userId",)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundFilter:
    types: tuple[str, ...] = CALL_TYPES
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    drop_if: tuple[DropRule, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PageRules:
    send: str = "all"
    event_name: str = "{name} page"
    unnamed_event_name: str = "Loaded a Page"


SCREEN_DEFAULTS = PageRules(event_name="{name} screen", unnamed_event_name="Loaded a Screen")


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRule:
    call: str | None = None
    name: str | None = None
    merge_nested_objects: bool | None = None
    properties: FieldRules = field(default_factory=FieldRules)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundMapping:
    identity: Identity = field(default_factory=Identity)
    filter: OutboundFilter = field(default_factory=OutboundFilter)
    pages: PageRules = field(default_factory=PageRules)
    screens: PageRules = SCREEN_DEFAULTS
    properties: FieldRules = field(default_factory=FieldRules)
    traits: TraitRules = field(default_factory=TraitRules)
    events: Mapping[str, EventRule] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMapping:
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    names: Mapping[str, str] = field(default_factory=dict)  # [inbound.events] X = { name = "..." }
    properties: FieldRules = field(default_factory=FieldRules)
    email_spec_properties: bool = True


# -- using the rules ----------------------------------------------------------------------------


def matches(globs: Sequence[str], name: str) -> str | None:
    """The first glob (case-sensitive) that matches ``name``."""
    return next((g for g in globs if fnmatch.fnmatchcase(name, g)), None)


def lookup(event: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted path."""
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def dropped_by(rules: Sequence[DropRule], event: Mapping[str, Any]) -> int | None:
    """The index of the first drop_if rule that matches the event."""
    for index, rule in enumerate(rules):
        found, value = lookup(event, rule.path)
        if rule.exists is not None and found == rule.exists:
            return index
        if rule.glob is not None and found and isinstance(value, str) and fnmatch.fnmatchcase(value, rule.glob):
            return index
        if rule.has_equals and found and value == rule.equals and type(value) is type(rule.equals):
            return index
    return None


def effective(rules: FieldRules, per_event: FieldRules | None = None) -> FieldRules:
    """The rules an event's fields go through (B2): a per-event ``allow`` replaces the global one; its ``deny``
    and ``rename`` add to the global ones, and its rename of a source the global table also renames wins."""
    if per_event is None or per_event == NO_RULES:
        return rules
    return replace(rules, allow=per_event.allow or rules.allow, deny=(*rules.deny, *per_event.deny),
                   rename={**rules.rename, **per_event.rename})


def shape(fields: Mapping[str, Any], rules: FieldRules) -> dict[str, Any]:
    """allow -> deny -> rename, once (B3), over ``fields``; the input is not changed.

    ``allow`` and ``deny`` entries are globs over a top-level key or a dotted path (``address.street``,
    ``address.*``): each dot-separated part matches one key, in objects and in each object of a list. A key that
    itself holds a dot is named by the same text, so ``x.y`` names both the key ``"x.y"`` and ``y`` inside ``x``.
    ``rename`` moves every source, read from the fields as allow and deny left them, to its top-level target at
    once: swaps and chains move each value once. A dotted source is a path to a value in nested objects (a key
    spelled with the dot wins) and leaves its object without it.
    """
    out = screen(fields, rules)
    return _renamed(out, rules.rename) if rules.rename else out


def screen(fields: Mapping[str, Any], rules: FieldRules) -> dict[str, Any]:
    """The fields ``rules.allow`` and ``rules.deny`` let through (``shape`` without the renames)."""
    out = dict(fields)
    if rules.allow:
        out = _allowed(out, rules.allow)
    if rules.deny:
        out = _denied(out, rules.deny)
    return out


def path_denied(deny: Sequence[str], path: str) -> str | None:
    """The deny glob that removes the value at ``path``: it names the path or an object the path goes through."""
    parts = path.split(".")
    return next((g for g in deny if len(g.split(".")) <= len(parts) and _names(g.split("."), parts)), None)


def path_allowed(allow: Sequence[str], path: str) -> bool:
    """Whether ``allow`` keeps some of the value at ``path``: a glob names it, an object it is in, or a key
    inside it."""
    parts = path.split(".")
    return any(_names(g.split("."), parts) for g in allow)


def _names(globs: list[str], parts: list[str]) -> bool:
    """Whether the glob parts and the path parts agree as far as both go."""
    return all(fnmatch.fnmatchcase(part, glob) for glob, part in zip(globs, parts, strict=False))


def _splits(glob: str) -> list[tuple[str, str]]:
    """(the part for this level, the rest) at every dot: a key may itself hold dots."""
    return [(glob[:i], glob[i + 1:]) for i, char in enumerate(glob) if char == "."]


def _deeper(globs: Sequence[str], key: str) -> tuple[str, ...]:
    return tuple(rest for glob in globs if "." in glob for head, rest in _splits(glob)
                 if fnmatch.fnmatchcase(key, head))


def _allowed(fields: Mapping[str, Any], allow: Sequence[str]) -> dict[str, Any]:
    out = {}
    for key, value in fields.items():
        if matches(allow, key):
            out[key] = value
            continue
        deeper = _deeper(allow, key)
        kept = _inside(value, deeper, _allowed, keep_others=False) if deeper else None
        if kept:
            out[key] = kept
    return out


def _denied(fields: Mapping[str, Any], deny: Sequence[str]) -> dict[str, Any]:
    out = {}
    for key, value in fields.items():
        if matches(deny, key):
            continue
        deeper = _deeper(deny, key)
        out[key] = _inside(value, deeper, _denied, keep_others=True) if deeper else value
    return out


def _inside(value: Any, globs: tuple[str, ...], step: Any, *, keep_others: bool) -> Any:
    """``step`` applied inside an object, or inside each object of a list; what is neither is kept as it is
    (deny) or left out (allow)."""
    if isinstance(value, Mapping):
        return step(value, globs)
    if isinstance(value, list):
        inner = [step(v, globs) if isinstance(v, Mapping) else v for v in value
                 if keep_others or isinstance(v, Mapping)]
        return inner if keep_others else [v for v in inner if v]
    return value if keep_others else None


def _renamed(fields: dict[str, Any], rename: Mapping[str, str]) -> dict[str, Any]:
    moved = {target: _take(fields, source) for source, target in rename.items()}
    fields.update({target: value for target, (found, value) in moved.items() if found})
    return fields


def _take(fields: dict[str, Any], source: str) -> tuple[bool, Any]:
    """Remove and return the value at ``source`` (a top-level key, else a dotted path through objects),
    copying the objects on its way so the caller's input is not changed."""
    if source in fields or "." not in source:
        return (True, fields.pop(source)) if source in fields else (False, None)
    for head, rest in _splits(source):
        inner = fields.get(head)
        if isinstance(inner, Mapping):
            copy = dict(inner)
            found, value = _take(copy, rest)
            if found:
                fields[head] = copy
                return True, value
    return False, None


def template(text: str, values: Mapping[str, str]) -> str | None:
    """Fill ``{name}``/``{category}``; None when a placeholder is missing or blank (``{{``/``}}`` escape)."""
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        value = values.get(match.group(1), "")
        missing |= not (isinstance(value, str) and value.strip())
        return value if isinstance(value, str) else ""

    result = re.sub(r"\{\{|\}\}|\{(\w*)\}", fill, text)
    return None if missing else result


def digest(settings: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of every setting that shapes what is sent."""
    text = json.dumps(settings, sort_keys=True, default=_plain, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)
