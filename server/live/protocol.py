"""The client and server events of a live stream: OpenAI Realtime's transcription shape.

Client -> server (JSON text messages; a binary message is raw PCM16, as an append):
    transcription_session.update  {"session": {"input_audio_format": "pcm16",
                                    "input_audio_transcription": {"model": <task id>},
                                    "turn_detection": {"type": "server_vad",
                                        "silence_duration_ms", "prefix_padding_ms"},
                                    "input_audio_sample_rate": 16000}}
        (also `session.update` with the GA shape session.audio.input.{transcription.model,
        format.rate, turn_detection})
    input_audio_buffer.append     {"audio": <base64 PCM16 little-endian mono>}
    input_audio_buffer.commit     end the utterance in progress now
    input_audio_buffer.clear      drop the utterance in progress
Server -> client: see session.py (created/updated, speech_started/stopped, committed,
conversation.item.input_audio_transcription.delta / .completed, error).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import numpy as np

from server.errors import HraError
from server.live.errors import InvalidAudioChunk, InvalidEvent

SAMPLE_RATES = (8_000, 16_000, 24_000, 48_000)
DEFAULT_RATE = 16_000


@dataclass(frozen=True)
class SessionUpdate:
    task_id: str | None = None
    rate: int | None = None
    silence_ms: int | None = None
    prefix_ms: int | None = None


def parse(message: str) -> dict:
    try:
        event = json.loads(message)
    except (ValueError, RecursionError):
        raise InvalidEvent("message is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise InvalidEvent("an event is a JSON object with a string 'type'")
    return event


def pcm16(data: bytes) -> np.ndarray:
    """Little-endian 16-bit samples -> float32 in [-1, 1)."""
    if len(data) % 2:
        raise InvalidAudioChunk("PCM16 audio has an even number of bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def audio_of(event: dict) -> np.ndarray:
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise InvalidAudioChunk("input_audio_buffer.append needs 'audio': base64 PCM16")
    try:
        data = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidAudioChunk("'audio' is not valid base64") from None
    return pcm16(data)


def session_update(event: dict) -> SessionUpdate:
    """Either shape of session update -> the fields we use (unknown fields are ignored)."""
    session = _object(event.get("session", {}), "session")
    audio_in = _object(_object(session.get("audio", {}), "session.audio").get("input", {}), "input")
    transcription = _object(
        session.get("input_audio_transcription") or audio_in.get("transcription") or {},
        "transcription",
    )
    turn = _object(session.get("turn_detection") or audio_in.get("turn_detection") or {}, "turn")
    fmt = session.get("input_audio_format") or audio_in.get("format")
    rate = session.get("input_audio_sample_rate")
    if isinstance(fmt, dict):
        rate = fmt.get("rate", rate)
        fmt = {"audio/pcm": "pcm16"}.get(fmt.get("type"), fmt.get("type"))
    if fmt is not None and fmt != "pcm16":
        raise InvalidEvent("input_audio_format must be 'pcm16' (16-bit little-endian mono)")
    if rate is not None and (type(rate) is not int or rate not in SAMPLE_RATES):  # 16000.0: no
        raise InvalidEvent(f"sample rate must be one of {', '.join(map(str, SAMPLE_RATES))}")
    if turn.get("type", "server_vad") != "server_vad":
        raise InvalidEvent("turn_detection.type must be 'server_vad'")
    model = transcription.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidEvent("the transcription model (task id) must be a string")
    return SessionUpdate(
        task_id=model,
        rate=rate,
        silence_ms=_bounded(turn.get("silence_duration_ms"), 100, 10_000, "silence_duration_ms"),
        prefix_ms=_bounded(turn.get("prefix_padding_ms"), 0, 2_000, "prefix_padding_ms"),
    )


def error_event(exc: HraError, event_id: str | None = None) -> dict:
    """The `error` event of `exc` (its stable code and message); whether the stream goes on
    after it is the error's `fatal` flag, its close code the error's `close_code`."""
    error = {"type": "invalid_request_error", "code": exc.code, "message": str(exc)}
    if event_id is not None:
        error["event_id"] = event_id
    return {"type": "error", "error": error}


def _object(value: object, name: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidEvent(f"'{name}' must be an object")
    return value


def _bounded(value: object, low: int, high: int, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidEvent(f"{name} must be an integer in {low}..{high}")
    return value
