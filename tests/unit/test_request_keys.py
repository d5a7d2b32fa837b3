"""What the middlewares and the body reader leave on a request is stored under typed
``web.RequestKey``s, never a string: aiohttp (3.14+) warns ``NotAppKeyWarning`` for a string
key, once per key and process, and the typed key gives its value a type."""

from __future__ import annotations

import warnings
from unittest import mock

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from metricgate.api.codec import read_json
from metricgate.api.keys import CALLER_KEY, caller
from metricgate.domain.auth.entities import Credential


def _json_request(body: bytes) -> web.Request:
    payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=mock.Mock())
    payload.feed_data(body)
    payload.feed_eof()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    return make_mocked_request("POST", "/", headers=headers, payload=payload)


def _string_keys(request: web.Request) -> list[object]:
    return [key for key in request if not isinstance(key, web.RequestKey)]


async def test_the_parsed_body_is_kept_under_a_typed_key() -> None:
    request = _json_request(b'{"name": "a"}')
    with warnings.catch_warnings():
        warnings.simplefilter("error", web.NotAppKeyWarning)
        fields = await read_json(request)
        assert await read_json(request) is fields  # the second read finds the first's answer
    assert fields.req_str("name") == "a"
    assert len(request) == 1
    assert _string_keys(request) == []


def test_the_caller_is_kept_under_a_typed_key() -> None:
    request = make_mocked_request("GET", "/")
    assert caller(request) is None
    credential = Credential(1, "alice", False, 1, "basic")
    with warnings.catch_warnings():
        warnings.simplefilter("error", web.NotAppKeyWarning)
        request[CALLER_KEY] = credential
    assert caller(request) is credential
    assert _string_keys(request) == []
