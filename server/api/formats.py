"""OpenAI transcription response formats.

Where the model gives its own segments (Whisper's timestamp tokens) they are used as
they are, and its word times where it computed them (asked for with
timestamp_granularities[]=word). Otherwise (CTC) segments split where the pause between
two words exceeds SEGMENT_GAP_S; word times are the frames on which a word's first
and last characters fired. Long files (server/longform/) give file-time words, so their
segments come from the windows' words and pauses the same way (CTC), or are the
stitched runs of each window's own segments (Whisper, with their window's numbers).

verbose_json segment fields, computed, not constants: `compression_ratio` is Whisper's
(UTF-8 bytes / zlib bytes of the segment text); with a CTC backbone `avg_logprob` is
the mean log-probability of the greedy best path per frame over the segment's frames and
`no_speech_prob` the probability that the model emits no character there (product of
the frames' blank posteriors); Whisper gives its own per clip; with neither, both are
left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.models.transcript import SegmentTiming, compression_ratio
from server.serving.request import Transcription

SEGMENT_GAP_S = 0.6
FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float


def words(t: Transcription) -> list[Word]:
    return [
        Word(
            w.word,
            round(w.start_s, 3),
            round(min(w.end_s, t.duration_s), 3),
        )
        for w in t.words
    ]


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    source: SegmentTiming | None = None  # the model's own, with its decode's numbers


def segments(t: Transcription) -> list[Segment]:
    if t.segments:
        return [
            Segment(
                round(min(s.start_s, t.duration_s), 3),
                round(min(s.end_s, t.duration_s), 3),
                s.text,
                s,
            )
            for s in t.segments
        ]
    return [Segment(g[0].start, g[-1].end, " ".join(w.word for w in g)) for g in _word_groups(t)]


def _word_groups(t: Transcription) -> list[list[Word]]:
    groups: list[list[Word]] = []
    for w in words(t):
        if groups and w.start - groups[-1][-1].end <= SEGMENT_GAP_S:
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def confidence(t: Transcription, seg: Segment) -> tuple[float, float] | None:
    """(avg_logprob, no_speech_prob) of a segment: from the CTC posteriors of its frames
    (FramePosteriors.between), else the model's own for the segment's decode (long-form
    Whisper: its window's) or for the clip (Whisper), else None."""
    own = seg.source
    if own is not None and own.avg_logprob is not None and own.no_speech_prob is not None:
        return own.avg_logprob, own.no_speech_prob
    if t.frames is not None:
        stats = t.frames.between(seg.start, seg.end)
        if stats is not None:
            return stats
    if t.avg_logprob is not None and t.no_speech_prob is not None:
        return t.avg_logprob, t.no_speech_prob
    return None


def _segment(i: int, t: Transcription, seg: Segment) -> dict:
    body = {
        "id": i,
        "seek": 0,
        "start": seg.start,
        "end": seg.end,
        "text": seg.text,
        "tokens": [],
        "temperature": _temperature(t, seg),
        "compression_ratio": round(compression_ratio(seg.text), 4),
    }
    stats = confidence(t, seg)
    if stats is not None:  # left out where nothing honest can be said
        body["avg_logprob"], body["no_speech_prob"] = round(stats[0], 4), round(stats[1], 4)
    return body


def _temperature(t: Transcription, seg: Segment) -> float:
    if seg.source is not None and seg.source.temperature is not None:
        return seg.source.temperature
    return t.temperature if t.temperature is not None else 0.0


def verbose_json(t: Transcription, with_words: bool) -> dict:
    body = {
        "task": "transcribe",
        "language": language_name(t.language),
        "duration": round(t.duration_s, 3),
        "text": t.text,
        "segments": [_segment(i, t, seg) for i, seg in enumerate(segments(t))],
    }
    if with_words:
        body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in words(t)]
    return body


def language_name(code: str | None) -> str:
    """OpenAI names English "english"; other languages are given as their code."""
    return "english" if code in (None, "en") else code


def _stamp(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def srt(t: Transcription) -> str:
    blocks = [
        f"{i}\n{_stamp(seg.start, ',')} --> {_stamp(seg.end, ',')}\n{seg.text}\n"
        for i, seg in enumerate(segments(t), start=1)
    ]
    return "\n".join(blocks)


def vtt(t: Transcription) -> str:
    cues = [
        f"{_stamp(seg.start, '.')} --> {_stamp(seg.end, '.')}\n{seg.text}\n" for seg in segments(t)
    ]
    return "WEBVTT\n\n" + "\n".join(cues)
