"""Pure parts: the signature scheme (receiver side included), retry decisions, subscription validation."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from metricgate.domain.errors import InvalidParameter
from metricgate.domain.webhooks.entities import delivery_body
from metricgate.domain.webhooks.events import (
    EVENT_TYPES,
    event_matches,
    validate_events,
    validate_url,
)
from metricgate.domain.webhooks.retry import backoff_delay_s, judge, retry_after_s
from metricgate.domain.webhooks.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    generate_secret,
    signature_headers,
    verify_signature,
)

SECRET = "whsec_test"
BODY = b'{"id":1,"type":"model_version.created"}'


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    headers = signature_headers(SECRET, BODY, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert headers == {TIMESTAMP_HEADER: "1700000000", SIGNATURE_HEADER: f"sha256={expected}"}
    assert verify_signature(SECRET, headers, BODY, now=1_700_000_010) == 1_700_000_000


def test_verify_accepts_lowercase_header_names() -> None:
    headers = {k.lower(): v for k, v in signature_headers(SECRET, BODY).items()}
    verify_signature(SECRET, headers, BODY)


def test_old_timestamp_is_refused_as_a_replay() -> None:
    headers = signature_headers(SECRET, BODY, timestamp=1_700_000_000)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signature(SECRET, headers, BODY, tolerance_s=300, now=1_700_000_000 + 301)
    # A timestamp from the future beyond the tolerance is just as suspicious.
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signature(SECRET, headers, BODY, tolerance_s=300, now=1_700_000_000 - 301)


def test_replay_with_a_fresh_timestamp_but_old_signature_is_refused() -> None:
    old = signature_headers(SECRET, BODY, timestamp=1_700_000_000)
    forged = {**old, TIMESTAMP_HEADER: "1700000500"}
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(SECRET, forged, BODY, now=1_700_000_500)


@pytest.mark.parametrize(
    "secret, body",
    [
        ("whsec_other", BODY),
        (SECRET, BODY + b" "),
        (SECRET, b'{"id":2,"type":"model_version.created"}'),
    ],
)
def test_wrong_secret_or_altered_body_is_refused(secret: str, body: bytes) -> None:
    headers = signature_headers(SECRET, BODY)
    with pytest.raises(SignatureError):
        verify_signature(secret, headers, body)


@pytest.mark.parametrize("missing", [TIMESTAMP_HEADER, SIGNATURE_HEADER])
def test_missing_or_malformed_headers_are_refused(missing: str) -> None:
    headers = signature_headers(SECRET, BODY)
    del headers[missing]
    with pytest.raises(SignatureError, match="missing"):
        verify_signature(SECRET, headers, BODY)
    with pytest.raises(SignatureError, match="malformed"):
        verify_signature(SECRET, {TIMESTAMP_HEADER: "soon", SIGNATURE_HEADER: "sha256=00"}, BODY)


def test_one_of_several_signatures_may_match() -> None:
    headers = signature_headers(SECRET, BODY)
    headers[SIGNATURE_HEADER] = "sha256=" + "0" * 64 + ", " + headers[SIGNATURE_HEADER]
    verify_signature(SECRET, headers, BODY)


def test_secrets_are_random_and_long() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second and first.startswith("whsec_") and len(first) >= 40


def test_delivery_body_is_stable_and_sorted() -> None:
    payload = {"type": "alias.set", "id": 7, "after": {"b": 1, "a": 2}}
    body = delivery_body("d-1", "3", payload)
    assert body == delivery_body("d-1", "3", dict(reversed(list(payload.items()))))
    assert (
        body
        == b'{"after":{"a":2,"b":1},"delivery_id":"d-1","id":7,"type":"alias.set","webhook_id":"3"}'
    )


# ---------------------------------------------------------------- retries


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 60.0)]:
        delays = [backoff_delay_s(attempt, 1.0, 60.0, rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert max(delays) - min(delays) > step / 4  # really jittered


@pytest.mark.parametrize(
    "status, outcome",
    [
        (200, "delivered"), (204, "delivered"), (None, "retry"), (500, "retry"), (502, "retry"),
        (503, "retry"), (429, "retry"), (408, "retry"), (400, "failed"), (401, "failed"),
        (404, "failed"), (410, "failed"), (301, "failed"),
    ],
)  # fmt: skip
def test_judge_classifies_statuses(status: int | None, outcome: str) -> None:
    assert judge(status, 1, 5, 1.0, 10.0).outcome == outcome


def test_judge_gives_up_after_max_attempts() -> None:
    assert judge(500, 4, 5, 1.0, 10.0).outcome == "retry"
    assert judge(500, 5, 5, 1.0, 10.0).outcome == "failed"
    assert judge(None, 5, 5, 1.0, 10.0).outcome == "failed"


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    assert judge(429, 1, 5, 1.0, 10.0, retry_after=7).delay_s == 7
    assert judge(503, 1, 5, 1.0, 10.0, retry_after=3600).delay_s == 10.0
    assert judge(500, 1, 5, 1.0, 10.0, retry_after=7).delay_s <= 1.0  # only for 429/503
    assert retry_after_s("12") == 12.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_s("soon") is None and retry_after_s(None) is None


# ---------------------------------------------------------------- subscriptions


def test_events_accept_types_and_family_patterns() -> None:
    assert validate_events(["model_version.*", "alias.set", "alias.set"]) == [
        "model_version.*",
        "alias.set",
    ]
    assert validate_events(["*"]) == ["*"]
    assert validate_events(list(EVENT_TYPES)) == list(EVENT_TYPES)
    for bad in ([], ["model_version.promoted"], ["model_*"], ["webhook.ping"], ["*.*"]):
        with pytest.raises(InvalidParameter):
            validate_events(bad)


def test_event_matching_mirrors_the_trigger() -> None:
    assert event_matches("model_version.stage_changed", ["model_version.*"])
    assert event_matches("alias.set", ["*"])
    assert event_matches("alias.set", ["alias.set"])
    assert not event_matches("alias.deleted", ["alias.set", "model_version.*"])


@pytest.mark.parametrize(
    "url", ["https://ci.example.com/hooks/registry", "http://127.0.0.1:8080/x?y=1"]
)
def test_valid_urls(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize(
    "url",
    ["", "ftp://example.com/x", "example.com/hook", "http://", "https://user:pw@example.com/",
     "http://example.com:99999/", "http://exa mple.com/", "http://x/" + "a" * 3000, "javascript:alert(1)"],
)  # fmt: skip
def test_invalid_urls(url: str) -> None:
    with pytest.raises(InvalidParameter):
        validate_url(url)
