"""JSON responses (homeserver/http.py json_response): the standard library's compact UTF-8
bytes, also for what the fast encoder refuses."""

from __future__ import annotations

import json

from homeserver.http import json_response


def _standard(data: object) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def test_json_responses_are_compact_utf8_as_the_standard_library_writes_them():
    data = {"body": "héllo ✓ 😀 \"quoted\" \\ \n\t\u0001", "n": [1, -2, 2**53 - 1, True, None],
            "nested": {"z": {}, "a": []}, "ratio": 0.5}
    response = json_response(data, status=201)
    assert response.body == _standard(data)
    assert response.status == 201
    assert response.content_type == "application/json" and response.charset == "utf-8"


def test_what_the_fast_encoder_refuses_is_written_by_the_standard_library():
    for data in ({"big": 2**70}, {1: "integer key"}):
        assert json_response(data).body == _standard(data)
