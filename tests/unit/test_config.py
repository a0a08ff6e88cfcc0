"""Config parsing: defaults, interpolation, and every rejection naming its key."""

from __future__ import annotations

from typing import Any

import pytest

from sync.config import DEFAULT_RATE_LIMITS, interpolate, parse, secrets
from sync.errors import ConfigError

CREDENTIALS = {
    "iterable": {"api_key": "ik"}, "segment": {"write_key": "sk"},
    "outbound": {"write_keys": ["wk"]}, "inbound": {"auth_tokens": ["tok"]},
}


def problems(raw: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(raw, env or {})
    return caught.value.problems


def test_defaults_follow_the_spec() -> None:
    config = parse(CREDENTIALS, {})
    assert (config.server.host, config.server.port, config.server.max_body_bytes) == ("127.0.0.1", 8787, 1048576)
    assert config.ledger.url == "sqlite:///data/ledger.db" and config.ledger.retention_days == 7
    assert config.iterable.api_url == "https://api.iterable.com" and config.iterable.project_type == "hybrid"
    assert config.segment.host == "https://api.segment.io" and config.inbound.auth_header == "Authorization"
    assert config.delivery.max_retry_hours == 72 and config.reconcile.enabled is True  # inbound is on
    assert config.iterable.rate_limits == DEFAULT_RATE_LIMITS
    assert config.server.webhook_max_body_bytes == 16_777_216 and config.outbound.accept_unsigned_array_tails
    assert config.iterable.queue_settle_seconds == 60


def test_reconciliation_is_on_by_default_with_inbound_and_says_what_it_needs() -> None:
    """Iterable does not promise to retry a webhook the daemon refused: the export API is the safety net."""
    assert parse({**CREDENTIALS, "inbound": {"enabled": False}}, {}).reconcile.enabled is False
    without_key = {**CREDENTIALS, "outbound": {"enabled": False}, "iterable": {"api_key": ""}}
    (problem,) = problems(without_key)
    assert problem.startswith("iterable.api_key: required for reconciliation") and "reconcile.enabled = false" \
        in problem
    assert parse({**without_key, "reconcile": {"enabled": False}}, {}).reconcile.enabled is False


def test_region_and_base_url() -> None:
    assert parse({**CREDENTIALS, "iterable": {"api_key": "k", "region": "eu"}}, {}).iterable.api_url == \
        "https://api.eu.iterable.com"
    assert parse({**CREDENTIALS, "iterable": {"api_key": "k", "base_url": "http://proxy:1/"}},
                 {}).iterable.api_url == "http://proxy:1"


def test_interpolation_with_defaults_and_lists() -> None:
    env = {"KEY": "secret", "A": "a"}
    assert interpolate("${KEY}/${MISSING:-dflt}/${MISSING}", env) == "secret/dflt/"
    config = parse({**CREDENTIALS, "outbound": {"write_keys": ["${A}", "${NONE}", "b"]},
                    "server": {"port": "${PORT:-9000}"}}, env)
    assert config.outbound.write_keys == ("a", "b") and config.server.port == 9000


def test_rate_limit_overrides_merge_with_defaults() -> None:
    config = parse({**CREDENTIALS, "iterable": {"api_key": "k", "rate_limits": {"events/trackBulk": 4}}}, {})
    assert config.iterable.rate_limits["events/trackBulk"] == 4.0
    assert config.iterable.rate_limits["users/bulkUpdate"] == 5.0


@pytest.mark.parametrize(("raw", "key"), [
    ({"sever": {}}, "sever: unknown key"),
    ({"server": {"port": 70000}}, "server.port"),
    ({"server": {"port": True}}, "server.port"),
    ({"server": "x"}, "server: expected a table"),
    ({"ledger": {"url": "oracle://x"}}, "ledger.url"),
    ({"ledger": {"retention_days": 0}}, "ledger.retention_days"),
    ({"iterable": {"api_key": "k", "project_type": "team"}}, "iterable.project_type"),
    ({"iterable": {"api_key": "k", "timeout_seconds": "soon"}}, "iterable.timeout_seconds"),
    ({"iterable": {"api_key": "k", "rate_limits": {"users/nuke": 1}}}, 'iterable.rate_limits."users/nuke"'),
    ({"outbound": {"write_keys": [1]}}, "outbound.write_keys"),
    ({"outbound": {"enabled": "maybe"}}, "outbound.enabled"),
    ({"inbound": {"auth_tokens": []}}, "inbound.auth_tokens"),
    ({"delivery": {"max_retry_hours": 0}}, "delivery.max_retry_hours"),
    ({"reconcile": {"event_types": "emailOpen"}}, "reconcile.event_types"),
])
def test_bad_values_name_their_key(raw: dict[str, Any], key: str) -> None:
    merged = {**CREDENTIALS, **{k: {**CREDENTIALS.get(k, {}), **v} if isinstance(v, dict) else v
                                for k, v in raw.items()}}
    assert any(key in problem for problem in problems(merged)), problems(merged)


def test_all_problems_are_reported_together() -> None:
    found = problems({**CREDENTIALS, "server": {"port": "x", "extra": 1}, "iterable": {"api_key": "ik", "region": "mars"}})
    assert len(found) == 3


def test_a_bad_value_does_not_hide_the_checks_across_keys() -> None:
    """check-config listed a type error and stopped there: a console token too short went unreported until
    the type error was fixed. A key whose value is bad is not reported twice."""
    found = problems({**CREDENTIALS, "ledger": {"retention_days": "seven"},
                      "console": {"enabled": True, "tokens": ["short"]}, "server": {"port": "x"}})
    assert {p.split(":")[0] for p in found} == {"ledger.retention_days", "console.tokens", "server.port"}, found


def test_enabled_directions_need_their_credentials() -> None:
    found = problems({})
    assert {p.split(":")[0] for p in found} == {"iterable.api_key", "outbound.write_keys", "inbound.auth_tokens",
                                               "segment.write_key"}
    disabled = parse({"outbound": {"enabled": False}, "inbound": {"enabled": False}}, {})
    assert disabled.outbound.enabled is False


def test_secrets_lists_every_credential() -> None:
    config = parse({**CREDENTIALS, "ledger": {"url": "postgresql://u:pw@h/db"}}, {})
    assert set(secrets(config)) == {"ik", "sk", "wk", "tok", "pw"}


def test_config_is_frozen() -> None:
    config = parse(CREDENTIALS, {})
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]
