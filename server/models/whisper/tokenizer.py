"""Whisper's byte-level BPE tokenizer, read from the shipped tokenizer.json.

tokenizer.json holds the text and special tokens; the 1501 timestamp tokens
<|0.00|> .. <|30.00|> follow <|notimestamps|> in the model's vocabulary (whether or
not the file lists them), as in openai-whisper.

Prompts (openai-whisper's sot_sequence, then <|notimestamps|> unless timestamps):
    English-only (tiny.en)   <|startoftranscript|>
    multilingual (base)      <|startoftranscript|> <|lang|> <|transcribe|>
A model is multilingual when its vocabulary has 51865+ entries (openai-whisper's rule);
its language tokens are the <|xx|> tokens between <|startoftranscript|> and <|translate|>.
"""

from __future__ import annotations

import re
from pathlib import Path

from tokenizers import Tokenizer

TIMESTAMP_SECONDS = 0.02
MULTILINGUAL_VOCAB = 51865
MAX_PREVIOUS_TOKENS = 223  # openai-whisper: n_text_ctx // 2 - 1
_LANGUAGE_TOKEN = re.compile(r"<\|([a-z]{2,3}|haw|yue)\|>")


class WhisperTokenizer:
    def __init__(self, path: Path, multilingual: bool = False) -> None:
        self._tok = Tokenizer.from_file(str(path))
        self.multilingual = multilingual
        self.eot = self._id("<|endoftext|>")
        self.sot = self._id("<|startoftranscript|>")
        self.translate = self._id("<|translate|>")
        self.transcribe = self._id("<|transcribe|>")
        self.sot_lm = self._id("<|startoflm|>")
        self.sot_prev = self._id("<|startofprev|>")
        self.no_speech = self._id("<|nocaptions|>", "<|nospeech|>")
        self.no_timestamps = self._id("<|notimestamps|>")
        self.timestamp_begin = self.no_timestamps + 1
        self.language_ids: dict[str, int] = {}  # code -> token id
        for i in range(self.sot + 1, self.translate):
            match = _LANGUAGE_TOKEN.fullmatch(self._tok.id_to_token(i) or "")
            if match:
                self.language_ids[match.group(1)] = i
        self.language_of = {i: code for code, i in self.language_ids.items()}

    def _id(self, *names: str) -> int:
        for token in names:
            found = self._tok.token_to_id(token)
            if found is not None:
                return found
        raise ValueError(f"tokenizer.json has none of {names!r}")

    @property
    def languages(self) -> list[str]:
        """Language codes a request may name (English-only models: just "en")."""
        return sorted(self.language_ids) if self.multilingual else ["en"]

    def prompt(self, timestamps: bool, language: str | None = None) -> list[int]:
        """The start of the decoder's input for one utterance in `language` (a code; a
        multilingual model needs one: callers detect it first, see decoding.py)."""
        sequence = [self.sot]
        if self.multilingual:
            if language not in self.language_ids:
                raise ValueError(f"no language token for {language!r}")
            sequence += [self.language_ids[language], self.transcribe]
        elif language not in (None, "en"):
            raise ValueError(f"an English-only model cannot transcribe {language!r}")
        return sequence if timestamps else [*sequence, self.no_timestamps]

    def previous(self, text: str | None, limit: int = MAX_PREVIOUS_TOKENS) -> list[int]:
        """A prompt text -> <|startofprev|> + its last `limit` tokens (at most
        MAX_PREVIOUS_TOKENS; [] for none); openai-whisper's initial_prompt (tokenized with
        a leading space)."""
        if not text or not text.strip():
            return []
        tokens = [t for t in self.encode(" " + text.strip()) if t < self.eot]  # text only
        limit = max(0, min(limit, MAX_PREVIOUS_TOKENS))
        return [self.sot_prev, *tokens[-limit:]] if limit else []

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

    def id_to_token(self, token: int) -> str:
        """The vocabulary entry (byte-level: a leading space shows as U+0120)."""
        return self._tok.id_to_token(token) or ""

    def decode(self, ids: list[int]) -> str:
        """Text tokens only (timestamps and specials dropped)."""
        return self._tok.decode([i for i in ids if i < self.eot])

    def timestamp_seconds(self, token: int) -> float:
        return (token - self.timestamp_begin) * TIMESTAMP_SECONDS
