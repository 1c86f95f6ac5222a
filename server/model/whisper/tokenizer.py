"""Whisper's byte-level BPE tokenizer, read from the shipped tokenizer.json.

tokenizer.json holds the text and special tokens (ids below 50363 for tiny.en);
the 1501 timestamp tokens <|0.00|> .. <|30.00|> follow <|notimestamps|> in the
model's vocabulary without being in the file, as in openai-whisper.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

TIMESTAMP_SECONDS = 0.02


class WhisperTokenizer:
    def __init__(self, path: Path) -> None:
        self._tok = Tokenizer.from_file(str(path))
        self.eot = self._id("<|endoftext|>")
        self.sot = self._id("<|startoftranscript|>")
        self.translate = self._id("<|translate|>")
        self.transcribe = self._id("<|transcribe|>")
        self.sot_lm = self._id("<|startoflm|>")
        self.sot_prev = self._id("<|startofprev|>")
        self.no_speech = self._id("<|nocaptions|>")
        self.no_timestamps = self._id("<|notimestamps|>")
        self.timestamp_begin = self.no_timestamps + 1

    def _id(self, token: str) -> int:
        found = self._tok.token_to_id(token)
        if found is None:
            raise ValueError(f"tokenizer.json has no {token!r}")
        return found

    def prompt(self, timestamps: bool) -> list[int]:
        """English-only models: <|startoftranscript|> [<|notimestamps|>]."""
        return [self.sot] if timestamps else [self.sot, self.no_timestamps]

    def special_ids(self) -> list[int]:
        """Tokens greedy decoding never emits (Whisper's SuppressTokens' fixed part)."""
        return [
            self.sot,
            self.translate,
            self.transcribe,
            self.sot_lm,
            self.sot_prev,
            self.no_speech,
            self.no_timestamps,
        ]

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text tokens only (timestamps and specials dropped)."""
        return self._tok.decode([i for i in ids if i < self.eot])

    def timestamp_seconds(self, token: int) -> float:
        return (token - self.timestamp_begin) * TIMESTAMP_SECONDS
