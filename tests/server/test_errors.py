"""One error taxonomy: every error declares its code, HTTP status, close code and fatality
once, on its class, and every boundary answers from those declarations.

Codes are unique: one class per code (a subclass that shares its parent's meaning does not
declare a code of its own, so it is not a separate entry).
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from server import errors as e
from server.api import errors as api_errors
from server.config import REPO_ROOT
from server.models.errors import HfCheckpointError

KINDS = e.taxonomy()
BY_CODE = {k.code: k for k in KINDS}

# The public contract (README): code -> (HTTP status, WebSocket close code). A change here
# is a change of the API.
STABLE = {
    "internal_error": (500, 1011),
    "unauthorized": (401, 1008),
    "not_found": (404, 1008),
    "method_not_allowed": (405, 1008),
    "request_timeout": (408, 1008),
    "payload_too_large": (413, 1008),
    "invalid_request": (400, 1008),
    "validation_error": (422, 1008),
    "unsupported_language": (400, 1008),
    "client_disconnected": (499, 1011),
    "invalid_audio": (400, 1008),
    "empty_audio": (400, 1008),
    "audio_too_short": (400, 1008),
    "unsupported_sample_rate": (400, 1008),
    "too_many_channels": (400, 1008),
    "audio_too_long": (413, 1008),
    "too_many_samples": (413, 1008),
    "vocabulary_too_costly": (413, 1008),
    "too_many_windows": (413, 1008),
    "overloaded": (503, 1013),
    "slot_pool_exhausted": (503, 1013),
    "deadline_exceeded": (504, 1011),
    "batch_failed": (500, 1011),
    "inference_failed": (500, 1011),
    "decode_budget_exceeded": (422, 1008),
    "transcript_too_long": (422, 1008),
    "job_too_large": (413, 1008),
    "too_many_streams": (429, 1013),
    "stream_error": (500, 1008),
    "invalid_event": (500, 1008),
    "invalid_audio_chunk": (500, 1008),
    "message_too_large": (500, 1008),
    "stream_idle_timeout": (500, 1008),
    "slow_consumer": (500, 1008),
    "stream_too_fast": (500, 1008),
    "stream_overloaded": (500, 1008),
    "store_error": (500, 1011),
    "unknown_task": (404, 1008),
    "invalid_task_id": (422, 1008),
    "head_rejected": (422, 1008),
    "invalid_vocabulary": (422, 1008),
    "fingerprint_mismatch": (422, 1008),
    "store_unavailable": (503, 1013),
    "quota_exceeded": (429, 1013),
    "invalid_visibility": (400, 1008),
    "unknown_file": (404, 1008),
    "unknown_job": (404, 1008),
    "unsupported_hyperparameter": (400, 1008),
    "invalid_dataset": (400, 1008),
    "too_many_jobs": (429, 1013),
    "whisper_load_failed": (500, 1011),
    "whisper_weights_missing": (500, 1011),
    "whisper_weights_hash_mismatch": (500, 1011),
    "whisper_model_file_invalid": (500, 1011),
    "hf_checkpoint_invalid": (500, 1011),
    "nemo_checkpoint_invalid": (500, 1011),
}
FATAL = {"stream_idle_timeout", "slow_consumer", "stream_too_fast", "stream_overloaded"}


def test_every_code_names_exactly_one_class():
    codes = [k.code for k in KINDS]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)


def test_every_concrete_error_declares_a_code_a_status_and_a_meaning():
    for kind in KINDS:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", kind.code), kind
        assert 400 <= kind.status < 600, kind
        assert kind.close_code in (1008, 1011, 1013), kind
        assert kind.doc, f"{kind.cls.__name__} has no docstring"


def test_a_class_without_its_own_code_is_a_base_or_shares_its_parents_meaning():
    """NotFound, TooLarge, ... set only a status: they are never raised, so their
    inherited `internal_error` never goes out with a 4xx."""
    bases = {e.BadRequest, e.NotFound, e.TooLarge, e.Unprocessable, e.TooMany, e.Unavailable}
    for base in bases:
        assert "code" not in vars(base) and "status" in vars(base)
    for kind in KINDS:
        assert kind.cls not in bases


def test_statuses_close_codes_and_fatality_are_the_stable_ones():
    assert {k.code: (k.status, k.close_code) for k in KINDS} == STABLE
    assert {k.code for k in KINDS if k.fatal} == FATAL
    assert e.ServingError is e.HraError


def test_unknown_job_and_file_are_not_unknown_tasks():
    assert not issubclass(e.UnknownJob, e.UnknownTask)
    assert not issubclass(e.UnknownFile, e.UnknownTask)
    assert issubclass(e.UnknownJob, e.NotFound) and issubclass(e.UnknownTask, e.NotFound)
    assert issubclass(e.UnknownTask, e.StoreError)


def test_store_errors_keep_their_import_path_and_builtin_bases_stay():
    from adapters_store import errors as store_errors
    from server.models.whisper.errors import WhisperLoadError

    assert store_errors.UnknownTask is e.UnknownTask
    assert issubclass(WhisperLoadError, RuntimeError) and issubclass(HfCheckpointError, ValueError)


def _code_literals() -> set[str]:
    """Every `code = "..."` in the code base (what tests/test_readme.py checks)."""
    codes = set()
    for folder in ("server", "adapters_store"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            codes |= set(re.findall(r'\bcode = "([a-z_]+)"', path.read_text()))
    return codes


def test_every_code_the_api_can_emit_is_in_the_taxonomy():
    emitted = _code_literals() | set(api_errors.HTTP_CODES.values())
    emitted |= {"invalid_request", "internal_error"}  # _http_error's fallbacks
    assert emitted <= set(BY_CODE), sorted(emitted - set(BY_CODE))
    for status, code in api_errors.HTTP_CODES.items():
        assert BY_CODE[code].status == status


def _app() -> FastAPI:
    app = FastAPI()
    api_errors.install(app)
    raising = {
        "library": KeyError("/srv/secret/model.bin: struct.error unpack requires 4 bytes"),
        "startup": HfCheckpointError("/srv/secret/config.json: not JSON (Expecting value)"),
        "job": e.UnknownJob("fine-tuning job 'x' does not exist"),
        "overloaded": e.Overloaded("queue full", retry_after_s=3),
        "timeout": e.RequestTimeout("slow body"),
    }

    @app.get("/raise/{name}")
    async def _raise(name: str) -> PlainTextResponse:
        raise raising[name]

    @app.get("/typed/{number}")
    async def _typed(number: int) -> PlainTextResponse:
        return PlainTextResponse(str(number))

    return app


async def _get(path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path)


@pytest.mark.parametrize("name", ["library", "startup"])
async def test_an_unknown_or_corrupt_exception_is_a_typed_500_without_its_text(name):
    response = await _get(f"/raise/{name}")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error == {
        "code": "internal_error",
        "message": "internal server error",
        "type": "server_error",
    }
    assert "secret" not in response.text and "struct" not in response.text


@pytest.mark.parametrize(
    "path, status, code, kind",
    [
        ("/raise/job", 404, "unknown_job", "not_found"),
        ("/raise/overloaded", 503, "overloaded", "unavailable"),
        ("/raise/timeout", 408, "request_timeout", "timeout"),
        ("/typed/seven", 422, "validation_error", "invalid_request"),
        ("/no/such/path", 404, "not_found", "not_found"),
    ],
)
async def test_every_error_answers_its_class_status_and_code(path, status, code, kind):
    response = await _get(path)
    assert response.status_code == status == BY_CODE[code].status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["type"] == kind
    if code == "overloaded":
        assert response.headers["retry-after"] == "3"
