"""Typed, frozen configuration read from TOML (SPEC section 2).

Every key of the contract exists here with its default. ``${VAR}`` and ``${VAR:-default}`` in
string values come from the environment. Unknown keys and bad values are collected and reported
together, each naming its key (``server.port: ...``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sync.errors import ConfigError
from sync.mapping import reading as mapping_config
from sync.mapping import rules as mapping
from sync.mapping.rules import InboundMapping, OutboundMapping

Region = Literal["us", "eu"]
ProjectType = Literal["email", "userId", "hybrid"]
EventNames = Literal["segment", "iterable"]
Deletion = Literal["delete", "forget", "skip"]
Subscriptions = Literal["update_subscriptions", "data_fields"]
TypeGuard = Literal["refuse", "off"]

REGION_URLS: Mapping[str, str] = {"us": "https://api.iterable.com", "eu": "https://api.eu.iterable.com"}

DEFAULT_RATE_LIMITS: Mapping[str, float] = {
    "users/update": 500.0,
    "users/bulkUpdate": 5.0,
    "users/updateEmail": 500.0,
    "events/track": 2000.0,
    "events/trackBulk": 10.0,
    "commerce/trackPurchase": 500.0,
    "commerce/updateCart": 500.0,
    "export/data.json": 4 / 60,
    "users/delete": 100.0,  # DELETE /api/users/{email} and /api/users/byUserId/{userId}
    "users/forget": 3.0,  # and at most 1,000 a day per project
    "users/updateSubscriptions": 500.0,
    "users/bulkUpdateSubscriptions": 5.0,  # no limit documented: paced as users/bulkUpdate
    "users/registerDeviceToken": 500.0,
    "users/registerBrowserToken": 500.0,
}



@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    max_body_bytes: int = 1_048_576  # /v1/* (Segment's own limit is 500 KB a batch)
    webhook_max_body_bytes: int = 16_777_216  # /segment/webhook: Actions batches of 1000 (up to 4000) events
    max_connections: int = 0  # open connections; past it new ones get 503 (0: from the open-file limit)
    header_timeout_seconds: float = 15.0  # a request's headers must arrive within this; also the keep-alive idle
    public_url: str = ""  # the daemon's public address, for the webhook drift check (SPEC section 15)


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerConfig:
    url: str = "sqlite:///data/ledger.db"
    retention_days: int = 7
    lock_timeout_seconds: float = 5.0  # PostgreSQL: a wait for a lock ends after this (a stalled replica's)
    statement_timeout_seconds: float = 30.0  # PostgreSQL: a statement ends after this
    idle_in_transaction_timeout_seconds: float = 30.0  # PostgreSQL: a session idle inside a transaction is closed
    pool_timeout_seconds: float = 5.0  # a wait for a free database connection ends after this (ingest: 503)


@dataclass(frozen=True, slots=True, kw_only=True)
class PushConfig:
    """Iterable push integration names: the one for every platform, or one per platform."""

    application_name: str = ""
    apns_application_name: str = ""
    gcm_application_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class IterableConfig:
    api_key: str = ""
    region: Region = "us"
    base_url: str = ""
    project_type: ProjectType = "hybrid"
    timeout_seconds: float = 30.0
    queue_settle_seconds: float = 60.0  # how long a person's calls stay in one of Iterable's two queues
    rate_limits: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    push: PushConfig = field(default_factory=PushConfig)

    @property
    def api_url(self) -> str:
        return (self.base_url or REGION_URLS[self.region]).rstrip("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentConfig:
    write_key: str = ""
    host: str = "https://api.segment.io"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundConfig:
    enabled: bool = True
    write_keys: tuple[str, ...] = ()
    shared_secrets: tuple[str, ...] = ()
    merge_nested_objects: bool = False
    accept_unsigned_array_tails: bool = True  # Segment signs only an array's first element
    deletion: Deletion = "delete"  # a Webhooks (Classic) delete event: Iterable delete, GDPR forget, or skip
    subscriptions: Subscriptions = "update_subscriptions"  # subscription traits: users/updateSubscriptions or fields
    hold_anonymous_hours: float = 24.0  # anonymous-only events wait this long for their visitor (0: skipped)
    type_guard: TypeGuard = "refuse"  # refuse values whose type Iterable locked otherwise, or "off" (section 15)
    mapping: OutboundMapping = field(default_factory=OutboundMapping)  # [outbound.identity], [outbound.filter] ...


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundConfig:
    enabled: bool = True
    auth_header: str = "Authorization"
    auth_tokens: tuple[str, ...] = ()
    event_names: EventNames = "segment"
    join_identities: bool = True  # inbound tracks carry the userId the ledger links to the email (SPEC section 14)
    mapping: InboundMapping = field(default_factory=InboundMapping)  # [inbound.filter], [inbound.events] ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentConfig:
    """End-user consent categories that must all be granted (SPEC section 14); empty: nothing is checked."""

    outbound_categories: tuple[str, ...] = ()  # read from the event's own consent object
    inbound_categories: tuple[str, ...] = ()  # read from the person's last consent seen outbound


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryConfig:
    max_retry_hours: float = 72.0
    lease_seconds: float = 120.0  # a claim's lease; a crashed process's rows return after it
    metrics_event_names: int = 20  # failure metrics name this many event names; the rest are "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileConfig:
    enabled: bool = True  # while inbound is enabled: Iterable does not promise to retry refused webhooks
    interval_minutes: int = 15
    lookback_minutes: int = 60
    event_types: tuple[str, ...] = (
        "emailSend",
        "emailOpen",
        "emailClick",
        "emailBounce",
        "pushSend",
        "pushOpen",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleConfig:
    enabled: bool = False  # the operator console at /console (SPEC section 12)
    tokens: tuple[str, ...] = ()  # login tokens; several while one is rotated out
    session_hours: float = 12.0  # a login lasts this long


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    iterable: IterableConfig = field(default_factory=IterableConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    inbound: InboundConfig = field(default_factory=InboundConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    consent: ConsentConfig = field(default_factory=ConsentConfig)


MIN_CONSOLE_TOKEN = 16

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; an unset VAR without default becomes ''."""
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a TOML config file."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {path}"]) from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    return parse(raw, os.environ if env is None else env)


def parse(raw: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    """Build a ``Config`` from parsed TOML; raise ``ConfigError`` naming every bad key."""
    problems: list[str] = []
    config: Config = _build(Config, raw, "", env, problems)
    reconcile_set = isinstance(raw.get("reconcile"), Mapping) and "enabled" in raw["reconcile"]
    if not problems and not reconcile_set and not config.inbound.enabled:  # the default follows inbound
        config = dataclasses.replace(config, reconcile=dataclasses.replace(config.reconcile, enabled=False))
    types_set = isinstance(raw.get("reconcile"), Mapping) and "event_types" in raw["reconcile"]
    if not problems and not types_set:  # the default types follow the inbound filter
        kept = mapping_config.kept_types(config.inbound.mapping, config.reconcile.event_types)
        config = dataclasses.replace(config, reconcile=dataclasses.replace(config.reconcile, event_types=kept))
    elif config.inbound.enabled and config.reconcile.enabled:
        problems.extend(mapping_config.reconcile_problems(config.inbound.mapping, config.reconcile.event_types))
    named = {problem.split(":", 1)[0] for problem in problems}  # a bad value's key stands at its default: its
    problems.extend(p for p in _cross_checks(config) if p.split(":", 1)[0] not in named)  # checks would repeat it
    if problems:
        raise ConfigError(problems)
    return config


def _build(cls: type, raw: Any, prefix: str, env: Mapping[str, str], problems: list[str]) -> Any:
    if not isinstance(raw, Mapping):
        problems.append(f"{prefix.rstrip('.') or 'config'}: expected a table")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    nested = {"rate_limits"} if cls is IterableConfig else set()
    mapping_keys = _MAPPING_KEYS.get(cls, ())
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if key in mapping_keys:
            continue
        if key not in fields or key == "mapping" and mapping_keys:
            problems.append(f"{name}: unknown key")
        elif key in nested:
            values[key] = _rate_limits(value, name, problems)
        elif dataclasses.is_dataclass(hints[key]):
            values[key] = _build(hints[key], value, f"{name}.", env, problems)
        else:
            values[key] = _coerce(hints[key], value, name, env, problems)
    if cls is OutboundConfig:
        values["mapping"] = mapping_config.outbound(raw, problems)
    elif cls is InboundConfig:
        values["mapping"] = mapping_config.inbound(raw, problems)
    return cls(**{k: v for k, v in values.items() if v is not _BAD})


_BAD = object()
_MAPPING_KEYS: dict[type, tuple[str, ...]] = {OutboundConfig: mapping_config.OUTBOUND_KEYS,
                                              InboundConfig: mapping_config.INBOUND_KEYS}


def _coerce(hint: Any, value: Any, name: str, env: Mapping[str, str], problems: list[str]) -> Any:
    origin = typing.get_origin(hint)
    if isinstance(value, str):
        value = interpolate(value, env)
    if origin is Literal:
        if value in typing.get_args(hint):
            return value
        choices = " | ".join(repr(a) for a in typing.get_args(hint))
        problems.append(f"{name}: must be one of {choices}, got {value!r}")
        return _BAD
    if origin is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(v for v in (interpolate(v, env) for v in value) if v)
        problems.append(f"{name}: expected a list of strings")
        return _BAD
    return _scalar(hint, value, name, problems)


def _scalar(hint: Any, value: Any, name: str, problems: list[str]) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
    elif hint is int:
        number = _number(value, int)
        if number is not None:
            return number
    elif hint is float:
        number = _number(value, float)
        if number is not None:
            return number
    elif hint is str and isinstance(value, str):
        return value
    problems.append(f"{name}: expected {_type_name(hint)}, got {value!r}")
    return _BAD


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return kind(value) if kind is float or isinstance(value, int) else None
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            return None
    return None


def _type_name(hint: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _rate_limits(value: Any, name: str, problems: list[str]) -> Any:
    if not isinstance(value, Mapping):
        problems.append(f"{name}: expected a table of endpoint = requests per second")
        return _BAD
    limits = dict(DEFAULT_RATE_LIMITS)
    for endpoint, rate in value.items():
        key = f'{name}."{endpoint}"'
        if endpoint not in DEFAULT_RATE_LIMITS:
            problems.append(f"{key}: unknown endpoint (known: {', '.join(DEFAULT_RATE_LIMITS)})")
        elif isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
            problems.append(f"{key}: expected a positive number of requests per second, got {rate!r}")
        else:
            limits[endpoint] = float(rate)
    return limits


def _cross_checks(config: Config) -> list[str]:
    problems: list[str] = []
    if not 0 < config.server.port < 65536:
        problems.append(f"server.port: must be 1-65535, got {config.server.port}")
    if config.server.max_body_bytes < 1024:
        problems.append("server.max_body_bytes: must be at least 1024")
    if config.server.webhook_max_body_bytes < 1024:
        problems.append("server.webhook_max_body_bytes: must be at least 1024")
    if config.server.max_connections < 0:
        problems.append("server.max_connections: must not be negative (0: from the open-file limit)")
    if not 0 < config.server.header_timeout_seconds <= 3600:
        problems.append("server.header_timeout_seconds: must be more than 0 and at most 3600")
    if not config.ledger.url.startswith(("sqlite:", "postgresql:", "postgres:")):
        problems.append("ledger.url: must start with sqlite:/// or postgresql://")
    if config.ledger.retention_days < 1:
        problems.append("ledger.retention_days: must be at least 1")
    for name in ("lock_timeout_seconds", "statement_timeout_seconds", "idle_in_transaction_timeout_seconds",
                 "pool_timeout_seconds"):
        if not getattr(config.ledger, name) > 0:
            problems.append(f"ledger.{name}: must be positive")
    if config.iterable.timeout_seconds <= 0:
        problems.append("iterable.timeout_seconds: must be positive")
    if config.iterable.queue_settle_seconds < 0:
        problems.append("iterable.queue_settle_seconds: must not be negative")
    if config.delivery.max_retry_hours <= 0:
        problems.append("delivery.max_retry_hours: must be positive")
    if config.outbound.hold_anonymous_hours < 0:
        problems.append("outbound.hold_anonymous_hours: must not be negative")
    if config.delivery.lease_seconds < 1:
        problems.append("delivery.lease_seconds: must be at least 1")
    if config.reconcile.interval_minutes < 1 or config.reconcile.lookback_minutes < 1:
        problems.append("reconcile.interval_minutes / lookback_minutes: must be at least 1")
    problems.extend(_credential_checks(config))
    return problems


def mapping_digest(config: Config) -> str:
    """The digest that names the mapping in force (stored with each row, logged, exported)."""
    return mapping.digest(mapping_settings(config))


def mapping_settings(config: Config) -> dict[str, Any]:
    """Every setting that shapes what is sent: the input of the mapping digest (SPEC section 10)."""
    return {"project_type": config.iterable.project_type, "merge_nested_objects": config.outbound.merge_nested_objects,
            "deletion": config.outbound.deletion, "subscriptions": config.outbound.subscriptions,
            "hold_anonymous": config.outbound.hold_anonymous_hours > 0,
            "push": config.iterable.push,
            "outbound": config.outbound.mapping, "event_names": config.inbound.event_names,
            "inbound": config.inbound.mapping,
            **({"consent": config.consent} if config.consent.outbound_categories else {})}


def _credential_checks(config: Config) -> list[str]:
    problems: list[str] = []
    if config.outbound.enabled:
        if not config.iterable.api_key:
            problems.append("iterable.api_key: required while outbound.enabled (is its variable set?)")
        if not any(config.outbound.write_keys) and not any(config.outbound.shared_secrets):
            problems.append("outbound.write_keys: at least one write key or shared secret is required")
    if config.inbound.enabled:
        if not any(config.inbound.auth_tokens):
            problems.append("inbound.auth_tokens: at least one token is required while inbound.enabled")
        if not config.segment.write_key:
            problems.append("segment.write_key: required while inbound.enabled (is its variable set?)")
    if config.reconcile.enabled and not config.iterable.api_key:
        problems.append("iterable.api_key: required for reconciliation, which is on by default while inbound is "
                        "enabled (it recovers webhooks Iterable never retried); set reconcile.enabled = false "
                        "to run without it")
    if config.reconcile.enabled and not config.inbound.enabled:
        problems.append("reconcile.enabled: needs inbound.enabled (reconciled events go to Segment)")
    if config.console.enabled:
        tokens = [t for t in config.console.tokens if t]
        if not tokens:
            problems.append("console.tokens: at least one login token is required while console.enabled "
                            "(is its variable set?)")
        elif any(len(t) < MIN_CONSOLE_TOKEN for t in tokens):
            problems.append(f"console.tokens: each token needs at least {MIN_CONSOLE_TOKEN} characters "
                            "(try: python -c 'import secrets; print(secrets.token_urlsafe(24))')")
        if config.console.session_hours <= 0:
            problems.append("console.session_hours: must be positive")
    return problems


def secrets(config: Config) -> list[str]:
    """Every secret value in the config, for redaction."""
    values = [config.iterable.api_key, config.segment.write_key, *config.outbound.write_keys]
    values += [*config.outbound.shared_secrets, *config.inbound.auth_tokens, *config.console.tokens]
    if "@" in config.ledger.url and ":" in config.ledger.url.split("@")[0].split("//")[-1]:
        values.append(config.ledger.url.split("@")[0].split("//")[-1].split(":", 1)[1])
    return [v for v in values if v]

