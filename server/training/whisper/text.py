"""Transcript forms for Whisper: the training target, and the normal form WER compares.

Whisper writes "Zero." or "0." for a spoken zero, capitals and punctuation in
sentences. Targets are what it naturally emits (a leading space, a capital, a final
period for a bare word); WER compares both sides after `normalize`: lowercase,
punctuation dropped, numbers spelt as words (0-99 as words, longer ones digit by
digit), so "5." and "five" are the same word.
"""

from __future__ import annotations

import re

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_TOKEN = re.compile(r"[a-z0-9']+")


def number_words(digits: str) -> str:
    n = int(digits)
    if len(digits) > 2 or (len(digits) == 2 and digits[0] == "0"):
        return " ".join(ONES[int(d)] for d in digits)
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] if ones == 0 else f"{TENS[tens]} {ONES[ones]}"


def normalize(text: str) -> str:
    """'Zero.' / '0.' / 'zero' -> 'zero'; "Can you put it there?" -> 'can you put it there'."""
    words = []
    for token in _TOKEN.findall(text.lower().replace("-", " ")):
        token = token.strip("'")
        if not token:
            continue
        words.append(number_words(token) if token.isdigit() else token)
    return " ".join(words)


def target_text(text: str) -> str:
    """A transcript as Whisper writes it, after the prompt: ' Five.' ' The dog ran.'"""
    text = " ".join(text.split())
    if not text:
        return text
    text = text[0].upper() + text[1:]
    if text[-1] not in ".?!":
        text += "."
    return " " + text
