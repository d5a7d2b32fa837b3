"""The request id (observability.py): what a proxy's id may be, and the JSON log line that
carries the id of the request being served, in that request's context only."""

from __future__ import annotations

import contextvars
import logging

import orjson
import pytest

from metricgate.observability import (
    JsonLogFormatter,
    current_request_id,
    new_request_id,
    set_request_id,
    valid_request_id,
)


@pytest.mark.parametrize(
    "text", ["0f3c", "a" * 128, "Root=1-5759e988-bd862e3fe1be46a994272793", "req:1/2+3=4.5_6"]
)
def test_ids_a_proxy_may_send(text: str) -> None:
    assert valid_request_id(text)


@pytest.mark.parametrize("text", [None, "", "a" * 129, "two words", "x\ny", "\u00e9", 'a"b'])
def test_ids_that_are_refused(text: str | None) -> None:
    assert not valid_request_id(text)


def test_a_log_line_names_its_request_and_no_other() -> None:
    record = logging.LogRecord("metricgate.x", logging.INFO, __file__, 1, "hello", None, None)
    formatter = JsonLogFormatter()
    request_id = new_request_id()

    def in_request() -> dict[str, object]:
        set_request_id(request_id)
        return dict(orjson.loads(formatter.format(record)))

    # A copied context, as aiohttp gives each request's task.
    assert contextvars.copy_context().run(in_request)["request_id"] == request_id
    assert current_request_id() is None
    assert "request_id" not in orjson.loads(formatter.format(record))
