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
from dataclasses import asdict, dataclass, field
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


def shape(fields: Mapping[str, Any], *layers: FieldRules | None) -> dict[str, Any]:
    """Apply allow -> deny -> rename of each layer in turn (global first, then per event)."""
    out = dict(fields)
    for rules in layers:
        if rules is None:
            continue
        if rules.allow:
            out = {k: v for k, v in out.items() if matches(rules.allow, k)}
        if rules.deny:
            out = {k: v for k, v in out.items() if not matches(rules.deny, k)}
        for source, target in rules.rename.items():
            if source in out:
                out[target] = out.pop(source)
    return out


def event_layer(rules: FieldRules, per_event: FieldRules) -> FieldRules:
    """A per-event layer: its ``allow`` replaces the global one; ``deny`` and ``rename`` add to it."""
    return FieldRules(allow=per_event.allow or rules.allow, deny=(*rules.deny, *per_event.deny),
                      rename={**rules.rename, **per_event.rename})


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
