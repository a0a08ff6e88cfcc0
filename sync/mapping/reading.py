"""Reading and validating the mapping keys of the config (configurable_mapping.md B2 and B4).

Every problem is collected, each naming its key, so one run of ``check-config`` lists them all.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from sync.iterable.api import EVENT_TYPES
from sync.mapping.rules import (
    CALL_TYPES,
    CALLS,
    CONTEXT_KEYS,
    IDENTIFIER_KEYS,
    MAX_GLOB,
    PATH_ROOTS,
    PLACEHOLDERS,
    SCREEN_DEFAULTS,
    SEND_MODES,
    DropRule,
    EventRule,
    FieldRules,
    Identity,
    InboundMapping,
    OutboundFilter,
    OutboundMapping,
    PageRules,
    TraitRules,
    matches,
    path_allowed,
    path_denied,
)

OUTBOUND_KEYS = ("identity", "filter", "pages", "screens", "properties", "traits", "events")
INBOUND_KEYS = ("filter", "events", "properties", "email_spec_properties")
# SPEC section 6's eventNames, and the other types a webhook carries (a glob matches anything else)
INBOUND_NAMES = EVENT_TYPES


class _Reader:
    """Typed reads of a raw table that record a problem (naming the key) instead of raising."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def table(self, raw: Any, name: str, known: tuple[str, ...]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.problems.append(f"{name}: expected a table")
            return {}
        for key in raw:
            if key not in known:
                self.problems.append(f"{name}.{_key(key)}: unknown key")
        return dict(raw)

    def strings(self, raw: Any, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        if raw is None:
            return default
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            self.problems.append(f"{name}: expected a list of strings")
            return default
        return tuple(raw)

    def globs(self, raw: Any, name: str) -> tuple[str, ...]:
        values = self.strings(raw, name)
        for index, glob in enumerate(values):
            problem = _glob_problem(glob)
            if problem:
                self.problems.append(f"{name}[{index}]: {problem}")
        return values

    def boolean(self, raw: Any, name: str, default: bool | None) -> Any:
        if raw is None:
            return default
        if not isinstance(raw, bool):
            self.problems.append(f"{name}: expected a boolean, got {raw!r}")
            return default
        return raw

    def text(self, raw: Any, name: str, default: str | None) -> Any:
        if raw is None:
            return default
        if not isinstance(raw, str) or not raw.strip():
            self.problems.append(f"{name}: expected a non-empty string, got {raw!r}")
            return default
        return raw

    def rules(self, raw: Any, name: str, *, traits: bool = False) -> FieldRules:
        known = ("allow", "deny", "rename", *(("context_fields", "drop_nulls") if traits else ()))
        table = self.table(raw, name, known)
        allow, deny = self.globs(table.get("allow"), f"{name}.allow"), self.globs(table.get("deny"), f"{name}.deny")
        rename = self._rename(table.get("rename"), f"{name}.rename", allow, deny)
        for both in sorted(set(allow) & set(deny)):
            self.problems.append(f"{name}: '{both}' is in both allow and deny")
        if traits:
            for index, key in enumerate((*allow, *rename.values())):
                if key in IDENTIFIER_KEYS:
                    where = f"{name}.allow[{index}]" if index < len(allow) else f"{name}.rename"
                    self.problems.append(f"{where}: '{key}' is an identifier, set outbound.identity.email_paths "
                                         "instead")
            context = self.strings(table.get("context_fields"), f"{name}.context_fields")
            for index, key in enumerate(context):
                if key not in CONTEXT_KEYS:
                    self.problems.append(f"{name}.context_fields[{index}]: unknown context key '{key}' "
                                         f"(known: {', '.join(CONTEXT_KEYS)})")
            return TraitRules(allow=allow, deny=deny, rename=rename, context_fields=context,
                              drop_nulls=self.boolean(table.get("drop_nulls"), f"{name}.drop_nulls", False))
        return FieldRules(allow=allow, deny=deny, rename=rename)

    def _rename(self, raw: Any, name: str, allow: tuple[str, ...], deny: tuple[str, ...]) -> dict[str, str]:
        table = raw if isinstance(raw, Mapping) else {}
        if raw is not None and not isinstance(raw, Mapping):
            self.problems.append(f"{name}: expected a table of source = \"target\"")
        seen: dict[str, str] = {}
        for source, target in table.items():
            key = f"{name}.{_key(source)}"
            if not isinstance(target, str) or not target.strip():
                self.problems.append(f"{key}: expected a non-empty target name")
                continue
            if target in seen:
                self.problems.append(f"{key}: '{seen[target]}' is renamed to '{target}' too")
            seen[target] = source
            outer = next((o for o in table if source.startswith(f"{o}.")), None)
            if outer is not None:
                self.problems.append(f"{key}: source is inside '{outer}', which is renamed too")
            if "." in target:
                self.problems.append(f"{key}: the target '{target}' is a dotted path; a rename moves a field to a "
                                     "top-level key")
            if matches(deny, source) or path_denied(deny, source):
                self.problems.append(f"{key}: source is denied (it would never be seen)")
            elif allow and not (matches(allow, source) or path_allowed(allow, source)):
                self.problems.append(f"{key}: source is not in allow (it would never be seen)")
        return {k: v for k, v in table.items() if isinstance(v, str) and v.strip()}


def outbound(raw: Mapping[str, Any], problems: list[str]) -> OutboundMapping:
    """The ``[outbound.*]`` mapping keys of an ``[outbound]`` table."""
    read = _Reader(problems)
    identity_raw = read.table(raw.get("identity"), "outbound.identity",
                              ("email_paths", "email_from_user_id", "user_id_paths"))
    identity = Identity(
        email_paths=_paths(read, identity_raw.get("email_paths"), "outbound.identity.email_paths",
                           Identity().email_paths),
        email_from_user_id=read.boolean(identity_raw.get("email_from_user_id"),
                                        "outbound.identity.email_from_user_id", True),
        user_id_paths=_paths(read, identity_raw.get("user_id_paths"), "outbound.identity.user_id_paths",
                             Identity().user_id_paths))
    mapping = OutboundMapping(identity=identity, filter=_filter(read, raw.get("filter")),
                              pages=_pages(read, raw.get("pages"), "outbound.pages", PageRules()),
                              screens=_pages(read, raw.get("screens"), "outbound.screens", SCREEN_DEFAULTS),
                              properties=read.rules(raw.get("properties"), "outbound.properties"),
                              traits=read.rules(raw.get("traits"), "outbound.traits", traits=True),  # type: ignore[arg-type]
                              events=_events(read, raw.get("events")))
    _cross_check(mapping, problems)
    return mapping


def _paths(read: _Reader, raw: Any, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    paths = read.strings(raw, name, default)
    for index, path in enumerate(paths):
        if not re.fullmatch(r"[A-Za-z_$][\w$-]*(\.[A-Za-z_$][\w$-]*)*", path):
            read.problems.append(f"{name}[{index}]: '{path}' is not a dotted path")
        elif path.split(".")[0] == "anonymousId":
            read.problems.append(f"{name}[{index}]: anonymousId would turn every anonymous visitor into an "
                                 "Iterable user")
    return paths


def _filter(read: _Reader, raw: Any) -> OutboundFilter:
    table = read.table(raw, "outbound.filter", ("types", "allow", "deny", "drop_if"))
    types = read.strings(table.get("types"), "outbound.filter.types", CALL_TYPES)
    for index, kind in enumerate(types):
        if kind == "group":
            read.problems.append(f"outbound.filter.types[{index}]: 'group' cannot be sent to Iterable (SPEC §5)")
        elif kind not in CALL_TYPES:
            read.problems.append(f"outbound.filter.types[{index}]: unknown type '{kind}' "
                                 f"(known: {', '.join(CALL_TYPES)})")
    allow, deny = read.globs(table.get("allow"), "outbound.filter.allow"), read.globs(table.get("deny"),
                                                                                     "outbound.filter.deny")
    for both in sorted(set(allow) & set(deny)):
        read.problems.append(f"outbound.filter: '{both}' is in both allow and deny")
    return OutboundFilter(types=types, allow=allow, deny=deny, drop_if=_drop_rules(read, table.get("drop_if")))


def _drop_rules(read: _Reader, raw: Any) -> tuple[DropRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        read.problems.append("outbound.filter.drop_if: expected a list of { path = ..., glob|equals|exists = ... }")
        return ()
    rules = []
    for index, entry in enumerate(raw):
        name = f"outbound.filter.drop_if[{index}]"
        table = read.table(entry, name, ("path", "glob", "equals", "exists"))
        path = table.get("path")
        if not isinstance(path, str) or path.split(".")[0] not in PATH_ROOTS:
            read.problems.append(f"{name}.path: must start with one of {', '.join(PATH_ROOTS)}")
            continue
        given = [k for k in ("glob", "equals", "exists") if k in table]
        if len(given) != 1:
            read.problems.append(f"{name}: give exactly one of glob, equals, exists")
            continue
        glob = table.get("glob")
        if "glob" in table and (not isinstance(glob, str) or _glob_problem(glob)):
            read.problems.append(f"{name}.glob: {_glob_problem(glob) if isinstance(glob, str) else 'expected a string'}")
            continue
        exists = read.boolean(table.get("exists"), f"{name}.exists", None)
        rules.append(DropRule(path=path, glob=glob, equals=table.get("equals"), exists=exists,
                              has_equals="equals" in table))
    return tuple(rules)


def _pages(read: _Reader, raw: Any, name: str, default: PageRules) -> PageRules:
    table = read.table(raw, name, ("send", "event_name", "unnamed_event_name"))
    send = table.get("send", default.send)
    if send not in SEND_MODES:
        read.problems.append(f"{name}.send: must be one of {' | '.join(repr(m) for m in SEND_MODES)}, got {send!r}")
        send = default.send
    event_name = read.text(table.get("event_name"), f"{name}.event_name", default.event_name)
    read.problems.extend(f"{name}.event_name: {problem}" for problem in _template_problems(event_name))
    unnamed = read.text(table.get("unnamed_event_name"), f"{name}.unnamed_event_name", default.unnamed_event_name)
    if re.search(r"\{\w*\}", unnamed.replace("{{", "").replace("}}", "")):
        read.problems.append(f"{name}.unnamed_event_name: must not hold a placeholder")
    return PageRules(send=send, event_name=event_name, unnamed_event_name=unnamed)


def _template_problems(text: str) -> list[str]:
    """What is wrong in a page/screen name template: only ``{name}`` and ``{category}``, and ``{{``/``}}`` for a
    brace (read left to right, as ``rules.template`` fills it)."""
    problems = []
    for token in re.finditer(r"\{\{|\}\}|\{(\w*)\}|[{}]", text):
        if token.group(0) in ("{", "}"):
            problems.append(f"stray '{token.group(0)}' at character {token.start() + 1} (placeholders are {{name}} "
                            "and {category}; write {{ or }} for a brace)")
        elif token.group(1) is not None and token.group(1) not in PLACEHOLDERS:
            problems.append(f"unknown placeholder {{{token.group(1)}}} (known: {{name}}, {{category}})")
    return problems


def _events(read: _Reader, raw: Any) -> dict[str, EventRule]:
    table = read.table(raw, "outbound.events", tuple(raw) if isinstance(raw, Mapping) else ())
    events = {}
    for event, entry in table.items():
        name = f'outbound.events."{event}"'
        rule = read.table(entry, name, ("call", "name", "merge_nested_objects", "properties"))
        call = rule.get("call")
        if call is not None and call not in CALLS:
            read.problems.append(f"{name}.call: must be one of {' | '.join(repr(c) for c in CALLS)}, got {call!r}")
            call = None
        merge = read.boolean(rule.get("merge_nested_objects"), f"{name}.merge_nested_objects", None)
        if merge is not None and call not in ("purchase", "cart"):
            read.problems.append(f'{name}.merge_nested_objects: only applies to call = "purchase" or "cart"')
        events[str(event)] = EventRule(call=call, name=read.text(rule.get("name"), f"{name}.name", None),
                                       merge_nested_objects=merge,
                                       properties=read.rules(rule.get("properties"), f"{name}.properties"))
    return events


def _cross_check(mapping: OutboundMapping, problems: list[str]) -> None:
    deciding = mapping.filter
    for event in mapping.events:
        name = f'outbound.events."{event}"'
        denied = matches(deciding.deny, event)
        if denied:
            problems.append(f"{name}: configured, but outbound.filter.deny '{denied}' drops it")
        elif deciding.allow and not matches(deciding.allow, event):
            problems.append(f"{name}: configured, but outbound.filter.allow does not let it through")
        elif "track" not in deciding.types:
            problems.append(f"{name}: configured, but outbound.filter.types drops every track")


def inbound(raw: Mapping[str, Any], problems: list[str]) -> InboundMapping:
    """The ``[inbound.*]`` mapping keys of an ``[inbound]`` table."""
    read = _Reader(problems)
    table = read.table(raw.get("filter"), "inbound.filter", ("allow", "deny"))
    allow, deny = read.globs(table.get("allow"), "inbound.filter.allow"), read.globs(table.get("deny"),
                                                                                    "inbound.filter.deny")
    for both in sorted(set(allow) & set(deny)):
        problems.append(f"inbound.filter: '{both}' is in both allow and deny")
    for kind, name in ((allow, "inbound.filter.allow"), (deny, "inbound.filter.deny")):
        for index, value in enumerate(kind):
            _known_type(value, f"{name}[{index}]", problems)
    names = {}
    events = read.table(raw.get("events"), "inbound.events",
                        tuple(raw["events"]) if isinstance(raw.get("events"), Mapping) else ())
    for event, entry in events.items():
        key = f"inbound.events.{_key(event)}"
        _known_type(str(event), key, problems)
        rule = read.table(entry, key, ("name",))
        value = read.text(rule.get("name"), f"{key}.name", None)
        if value:
            names[str(event)] = value
    return InboundMapping(allow=allow, deny=deny, names=names,
                          properties=read.rules(raw.get("properties"), "inbound.properties"),
                          email_spec_properties=read.boolean(raw.get("email_spec_properties"),
                                                             "inbound.email_spec_properties", True))


def kept_types(mapping: InboundMapping, types: tuple[str, ...]) -> tuple[str, ...]:
    """The export types the inbound filter lets through."""
    return tuple(t for t in types if not matches(mapping.deny, t) and (not mapping.allow or matches(mapping.allow, t)))


def reconcile_problems(mapping: InboundMapping, types: tuple[str, ...]) -> list[str]:
    """Reconciliation pulling a type the inbound filter then drops is a config mistake."""
    problems = []
    for index, kind in enumerate(types):
        blocker = matches(mapping.deny, kind)
        if blocker:
            problems.append(f"reconcile.event_types[{index}]: '{kind}' is dropped by inbound.filter.deny '{blocker}'")
        elif mapping.allow and not matches(mapping.allow, kind):
            problems.append(f"reconcile.event_types[{index}]: '{kind}' is not in inbound.filter.allow")
    return problems


def _known_type(value: str, key: str, problems: list[str]) -> None:
    if any(c in value for c in "*?[") or value in INBOUND_NAMES:
        return
    close = difflib.get_close_matches(value, sorted(INBOUND_NAMES), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    problems.append(f"{key}: unknown Iterable event type{hint}; use a glob to match types the daemon does not know")


def _glob_problem(glob: str) -> str | None:
    if not glob or len(glob) > MAX_GLOB:
        return f"a glob must be 1 to {MAX_GLOB} characters"
    depth = 0
    for char in glob:
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
    return f"invalid glob '{glob}': unterminated '['" if depth else None


def _key(key: Any) -> str:
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else f'"{text}"'
