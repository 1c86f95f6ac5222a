"""CTC decoding restricted to a task's vocabulary: the best sequence of known words.

Greedy decoding spells whatever the acoustics suggest ("tero" for "zero"). A task
that only ever hears a closed set of words (digits, commands, product names) can
register that set with its head; the decoder then finds the most probable frame
alignment whose transcript is a sequence of vocabulary words: Viterbi over a
word loop, each word its CTC label sequence [blank c1 blank c2 ... cn blank].

Between words the loop takes a space token or only blanks; a word may follow
another word's last character directly only through a blank or a space, which
costs nothing in practice (the model emits one there anyway).

Cost: Viterbi touches every state on every frame (the time per state-frame:
load_tests/bench_vocabulary.py, docs/api.md), and keeps one byte of backpointer per
state-frame. `check_vocabulary_cost` bounds states x frames per utterance at admission;
compiled loops are cached within a byte budget (WORD_LOOP_CACHE_BYTES).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from server.bounded_cache import ByteBoundedLRU
from server.errors import VocabularyTooCostly
from server.models.ctc.tokenizer import BLANK, CharTokenizer
from server.models.transcript import Decoded, WordTiming

SPACE = CharTokenizer.symbols.index(" ")
NEG = -1e30
SILENCE, SPACE_STATE = 0, 1  # flat state ids; word states follow
MAX_VOCABULARY_COST = 3_000_000
"""Default bound on states x frames per utterance (what it costs in time:
load_tests/bench_vocabulary.py, docs/api.md)."""
DEFAULT_FRAME_SECONDS = 0.04  # the embedded Conformer: 10 ms features subsampled 4x
WORD_LOOP_CACHE_BYTES = 32 * 1024 * 1024
"""Compiled word loops kept across calls: ~56 bytes per state, so a vocabulary at the
upload limit (8,000 characters, ~17,000 states) is ~1 MB."""


def vocabulary_states(words: Sequence[str]) -> int:
    """States of the word loop for `words`: silence, space, and 2 * len(w) + 1 per word."""
    return 2 + sum(2 * len(w) + 1 for w in words)


def vocabulary_decode_cost(words: Sequence[str], frames: int) -> int:
    """Viterbi work for one utterance of `frames` model frames: states x frames."""
    return vocabulary_states(words) * max(frames, 0)


def model_frames(audio_seconds: float, frame_seconds: float = DEFAULT_FRAME_SECONDS) -> int:
    """Model output frames for an utterance, rounded up (never fewer than the model emits)."""
    return math.ceil(max(audio_seconds, 0.0) / frame_seconds) + 1


def check_vocabulary_cost(
    words: Sequence[str],
    audio_seconds: float,
    *,
    max_cost: int = MAX_VOCABULARY_COST,
    frame_seconds: float = DEFAULT_FRAME_SECONDS,
) -> None:
    """Admission check: raises VocabularyTooCostly (413, `vocabulary_too_costly`) when
    decoding `audio_seconds` of audio within `words` would cost more than `max_cost`
    state-frames. No vocabulary (greedy decoding) costs nothing here."""
    if not words:
        return
    frames = model_frames(audio_seconds, frame_seconds)
    cost = vocabulary_decode_cost(words, frames)
    if cost > max_cost:
        states = vocabulary_states(words)
        longest = (max_cost // states - 1) * frame_seconds
        raise VocabularyTooCostly(
            f"decoding {audio_seconds:.1f} s within this task's vocabulary ({len(words)} words, "
            f"{states} states) costs {cost} state-frames, limit {max_cost}; audio up to "
            f"{max(longest, 0.0):.1f} s is accepted for it"
        )


class WordLoop:
    """A vocabulary compiled to a flat CTC state graph, built once per task.

    Every state has at most four predecessors. Two extra columns sit past the
    real states: WORD_END (the best of all words' final states at the previous
    frame, so entering a word costs O(1) whatever the vocabulary size) and a
    dead slot for padding.
    """

    def __init__(self, words: Sequence[str], tokenizer: CharTokenizer) -> None:
        self.words = tuple(tokenizer.normalize(w) for w in words)
        encoded = [tokenizer.encode(w) for w in self.words]
        if not encoded or any(not e or SPACE in e for e in encoded):
            raise ValueError("a vocabulary is a non-empty list of single words")
        labels, word_of, char_of, finals = [BLANK, SPACE], [-1, -1], [-1, -1], []
        for w, tokens in enumerate(encoded):
            for j in range(2 * len(tokens) + 1):
                labels.append(BLANK if j % 2 == 0 else tokens[j // 2])
                word_of.append(w)
                char_of.append(j)
            finals += [len(labels) - 2, len(labels) - 1]  # last char, last blank
        count = len(labels)
        self.word_end, dead = count, count + 1
        preds = np.full((count, 4), dead, dtype=np.int64)
        preds[SILENCE, 0] = SILENCE
        preds[SPACE_STATE, :2] = (SPACE_STATE, self.word_end)
        for s in range(2, count):
            j = char_of[s]
            if j == 0:  # first blank: from silence, a space or any word's end
                preds[s] = (s, SILENCE, SPACE_STATE, self.word_end)
            elif j == 1:  # first char: from silence or a space, or the first blank
                preds[s, :4] = (s, s - 1, SILENCE, SPACE_STATE)
            else:
                preds[s, :2] = (s, s - 1)
                if j % 2 == 1 and labels[s] != labels[s - 2]:
                    preds[s, 2] = s - 2
        self.labels = np.array(labels)
        self.word_of = np.array(word_of)
        self.char_of = np.array(char_of)
        self.finals = np.array(finals)
        self.preds = preds

    @property
    def nbytes(self) -> int:
        arrays = (self.labels, self.word_of, self.char_of, self.finals, self.preds)
        return sum(a.nbytes for a in arrays) + sum(len(w) + 49 for w in self.words)


_loops: ByteBoundedLRU[tuple[str, ...], WordLoop] = ByteBoundedLRU(
    WORD_LOOP_CACHE_BYTES, lambda words: WordLoop(words, CharTokenizer()), lambda loop: loop.nbytes
)


def word_loop(words: tuple[str, ...]) -> WordLoop:
    """Compiled once per distinct vocabulary (hashing the words is cheap next to compiling
    them), kept in an LRU of at most WORD_LOOP_CACHE_BYTES."""
    return _loops.get_or_build(words)


def vocabulary_decode(log_probs: np.ndarray, loop: WordLoop, frame_seconds: float) -> Decoded:
    """log_probs [T, V] of one utterance, valid frames only -> best word sequence."""
    frames, count = log_probs.shape[0], len(loop.labels)
    scores = np.full(count + 2, NEG)
    scores[SILENCE] = 0.0  # the start: as if silence held before the first frame
    back = np.zeros((frames, count), dtype=np.int8)
    ended = np.zeros(frames, dtype=np.int64)  # which final state WORD_END stood for
    for t in range(frames):
        ended[t] = loop.finals[scores[loop.finals].argmax()]
        scores[loop.word_end] = scores[ended[t]] if t else NEG
        candidates = scores[loop.preds]  # [count, 4]
        back[t] = candidates.argmax(axis=1)
        scores[:count] = candidates.max(axis=1) + log_probs[t, loop.labels]
    ends = np.concatenate([[SILENCE, SPACE_STATE], loop.finals])
    state = int(ends[scores[ends].argmax()])
    path = np.empty(frames, dtype=np.int64)
    for t in range(frames - 1, -1, -1):
        path[t] = state
        state = int(loop.preds[state, back[t, state]])
        if state == loop.word_end:
            state = int(ended[t])
    return _words(loop, path, frame_seconds)


def _words(loop: WordLoop, path: np.ndarray, frame_seconds: float) -> Decoded:
    """Frame path -> words, timed like greedy decoding (first char's frame to last's + 1)."""
    timings: list[WordTiming] = []
    start = last_char = None
    previous = SILENCE
    for t, state in enumerate(path.tolist()):
        j = loop.char_of[state]
        entering = state >= 2 and j <= 1 and (previous < 2 or loop.char_of[previous] > j)
        if entering or state < 2:
            if start is not None:
                timings.append(_timing(loop, previous, start, last_char, frame_seconds))
            start = last_char = None
        if j > 0 and j % 2 == 1 and state != previous:  # a character starts on this frame
            start = t if start is None else start
            last_char = t
        previous = state
    if start is not None:
        timings.append(_timing(loop, previous, start, last_char, frame_seconds))
    return Decoded(" ".join(w.word for w in timings), timings, len(path))


def _timing(loop: WordLoop, state: int, start: int, last: int, frame_seconds: float):
    word = loop.words[loop.word_of[state]]
    return WordTiming(word, start * frame_seconds, (last + 1) * frame_seconds)
