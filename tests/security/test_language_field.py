"""Hostile `language` values: refused with a stable code before any audio work, the
message bounded and printable, never a 500; valid codes in any case still served."""

from __future__ import annotations

import pytest

from server.errors import UnsupportedLanguage
from server.serving.request import check_language
from tests.helpers import fsdd_bytes

HOSTILE = [
    "fr",  # a real language the served (English) model does not have
    "x" * 100_000,  # huge: only a bounded prefix is ever looked at or echoed
    "en\n",  # near miss with a control character
    "e\u0301n",  # combining character
    "../../etc/passwd",
    "<|de|>",  # a special token spelled out
    "\x1b[31mred",  # terminal escape
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_language_is_refused_with_unsupported_language(client, fsdd_test, value):
    r = await client.post(
        "/v1/audio/transcriptions",
        files={"file": ("a.wav", fsdd_bytes(fsdd_test[0]))},
        data={"model": "base", "language": value},
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "unsupported_language"
    assert len(error["message"]) < 300 and "\x1b" not in error["message"]
    assert "\n" not in error["message"]


async def test_language_query_longer_than_32_characters_is_a_validation_error(client, fsdd_test):
    r = await client.post(
        f"/v1/transcribe?language={'a' * 33}",
        content=fsdd_bytes(fsdd_test[0]),
        headers={"content-type": "audio/wav"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


async def test_english_in_any_case_or_by_name_is_served_on_an_english_model(client, fsdd_test):
    data = fsdd_bytes(fsdd_test[0])
    texts = set()
    for value in ["en", "EN", "English", ""]:
        r = await client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", data)},
            data={"model": "base", "language": value, "response_format": "verbose_json"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["language"] == "english"
        texts.add(r.json()["text"])
    assert len(texts) == 1
    r = await client.post(
        "/v1/transcribe?language=de", content=data, headers={"content-type": "audio/wav"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_language"


def test_check_language_maps_to_a_known_code_or_raises():
    known = ("de", "en", "fr")
    assert check_language(None, known) is None and check_language("", known) is None
    assert check_language("DE", known) == "de" and check_language("english", known) == "en"
    with pytest.raises(UnsupportedLanguage, match="3 in all"):
        check_language("xx", known)


async def test_a_prompt_longer_than_4000_characters_is_refused_before_any_work(client, fsdd_test):
    r = await client.post(
        "/v1/audio/transcriptions",
        files={"file": ("a.wav", fsdd_bytes(fsdd_test[0]))},
        data={"model": "base", "prompt": "x" * 4001},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    assert "4000" in r.json()["error"]["message"]
