"""Character vocabulary for CTC: blank, space, apostrophe and a-z.

Characters keep the output layer tiny and let a head adapt spelling-free: any
word the acoustics support can be emitted, no lexicon to ship.
"""

from __future__ import annotations

import re

BLANK = 0
_SYMBOLS = ["<blank>", " ", "'"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
_INDEX = {s: i for i, s in enumerate(_SYMBOLS)}
_NOT_IN_VOCAB = re.compile(r"[^a-z' ]+")


class CharTokenizer:
    """Maps normalised transcripts to CTC label ids and back."""

    symbols = tuple(_SYMBOLS)

    @property
    def vocab_size(self) -> int:
        return len(_SYMBOLS)

    @staticmethod
    def normalize(text: str) -> str:
        """Lower-case, drop characters outside the vocabulary, squeeze spaces."""
        text = _NOT_IN_VOCAB.sub(" ", text.lower())
        return " ".join(text.split())

    def encode(self, text: str) -> list[int]:
        return [_INDEX[c] for c in self.normalize(text)]

    def decode(self, ids: list[int]) -> str:
        return "".join(_SYMBOLS[i] for i in ids if i != BLANK)
