"""A transcription request and its result, as values.

Every surface builds one `TranscriptionRequest` (POST /v1/transcribe, the OpenAI
endpoint, its SSE stream, the CLI) and hands it to the TranscriptionService
(server/serving/transcription.py); `validated` bounds what the client sent before
anything is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.errors import InvalidRequest, UnsupportedLanguage
from server.models.transcript import DecodeOptions, FramePosteriors, SegmentTiming, WordTiming
from server.observability.log_safety import printable

BASE_TASK = "base"  # the backbone without a head
MAX_PROMPT_CHARS = 4000  # Whisper keeps the last 223 tokens of a prompt anyway
LANGUAGE_ALIASES = {"english": "en"}  # what the API accepted before languages existed


@dataclass(frozen=True)
class TranscriptionRequest:
    """`language`: a code the model knows (None: the model decides); `words`: word times
    wanted (CTC models give them always; Whisper aligns only on request); `prompt`: text
    the audio continues (Whisper; CTC models ignore it); `temperature`: Whisper's first
    decoding temperature, with fallback (CTC models ignore it)."""

    audio: bytes
    task_id: str = BASE_TASK
    language: str | None = None
    words: bool = False
    prompt: str | None = None
    temperature: float = 0.0

    def options(self, languages: tuple[str, ...]) -> DecodeOptions:
        """The decode options, each field checked against its bound (400 beyond it)."""
        if self.prompt is not None and len(self.prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"prompt is longer than {MAX_PROMPT_CHARS} characters")
        if not 0.0 <= self.temperature <= 1.0:  # NaN too
            raise InvalidRequest("temperature must be between 0 and 1")
        language = check_language(self.language, languages)
        return DecodeOptions(language, self.words, self.prompt, float(self.temperature))


@dataclass(frozen=True)
class Transcription:
    task_id: str
    head_version: int | None
    text: str
    words: list[WordTiming]
    duration_s: float
    queue_ms: float
    compute_ms: float
    request_id: str
    segments: list[SegmentTiming] = field(default_factory=list)  # the model's own (Whisper)
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    language: str | None = None  # the language decoded, where the model says (Whisper)
    temperature: float | None = None  # Whisper: the temperature its decode kept (fallback)
    frames: FramePosteriors | None = None  # CTC posteriors, for segment confidence


def check_language(language: str | None, known: tuple[str, ...]) -> str | None:
    """A request's `language` -> a code the model knows (None, "": the model decides).
    Bounded: at most 32 characters are looked at, and only echoed printable."""
    if language is None or language == "":
        return None
    code = LANGUAGE_ALIASES.get(language.lower(), language.lower()) if len(language) < 16 else ""
    if code in known:
        return code
    shown = printable(language[:32])
    if known == ("en",):
        raise UnsupportedLanguage(f"language {shown!r} is not supported; this model is English")
    raise UnsupportedLanguage(
        f"language {shown!r} is not supported; use an ISO 639-1 code this model knows "
        f"({', '.join(known[:8])}, ... {len(known)} in all)"
    )
