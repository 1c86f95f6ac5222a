"""Whisper served by the engine: one encoder pass with per-utterance heads, batched greedy decode.

Heads adapt the ENCODER layers (server.models.hra.HRAModel over WhisperEncoder); the
text decoder is Whisper's own and is shared by every row. The whole batch, encoder and
every decoding step, is one fused pass: if it raises, the engine bisects it.

Length buckets: one bucket per batch (the default "pad" window makes every row Whisper's
30 s window anyway; with "cut" the rows are masked, and a row's states do not depend on
its batch either way).

Timing: Whisper's timestamp tokens give honest segment times (start, end, text); word
times come from the alignment heads' cross-attention + DTW (alignment.py), computed only
for the rows whose request asks for them (one extra decoder pass over those rows).

Languages: a multilingual model takes each row's language (or detects it); an
English-only model takes "en" only (server/serving/request.py refuses others before queueing).

Cost: each row's decoding is bounded by its audio's length (decoding.py's DecodeLimits:
tokens per attempt, attempts, a budget over them, prompt tokens); a row past its budget
fails alone with 422 `decode_budget_exceeded`, its batch-mates unaffected.
"""

from __future__ import annotations

import math

import torch

from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadRecord
from server.audio.reading import Audio
from server.config import WhisperSettings
from server.errors import DecodeBudgetExceeded
from server.models.hra import HRAModel
from server.models.length_buckets import NEVER_SPLIT
from server.models.transcript import Decoded, DecodeOptions, SegmentTiming, WordTiming
from server.models.whisper import frontend
from server.models.whisper.decoding import UNLIMITED, DecodeLimits, Transcript, decode
from server.models.whisper.model import WhisperModel

MAX_SECONDS = frontend.WINDOW_SAMPLES / frontend.SAMPLE_RATE  # one pass; longer: server/longform/


def decode_limits(settings: WhisperSettings) -> DecodeLimits:
    """The settings' bounds on one row's decoding (HRA_WHISPER__...)."""
    return DecodeLimits(
        tokens_per_s=settings.tokens_per_s,
        min_tokens=settings.min_tokens,
        max_attempts=settings.max_attempts,
        budget_per_s=settings.decode_budget_per_s,
        min_budget=settings.min_budget,
        max_prompt_tokens=settings.max_prompt_tokens,
    )


class WhisperRecognizer:
    vocabularies = False  # Whisper decodes BPE tokens: a task's word list does not apply
    max_seconds = MAX_SECONDS

    def __init__(
        self,
        whisper: WhisperModel,
        hra: HRAModel,
        max_tokens: int = 224,
        timestamps: bool = True,
        fallback: bool = True,
        limits: DecodeLimits = UNLIMITED,
    ) -> None:
        if hra.backbone is not whisper.encoder:
            raise ValueError("hra must wrap this Whisper model's encoder")
        self.whisper = whisper.eval()
        self.model = hra.eval()
        self.max_tokens = max_tokens
        self.timestamps = timestamps
        self.fallback = fallback  # temperature fallback (decoding.py); False: one attempt
        self.limits = limits  # each row's decoding cost, by its length (decoding.py)
        self.frame_seconds = whisper.encoder.frame_seconds
        self.min_samples = whisper.encoder.min_samples
        self.languages = tuple(whisper.tokenizer.languages)

    def forward_overhead_frames(self, device: torch.device) -> int:
        return NEVER_SPLIT  # one bucket per batch (module docstring)

    def featurize(self, audio: Audio, device: torch.device) -> torch.Tensor:
        return self.whisper.encoder.featurize(audio.at_model_rate().to(device))

    def forward(
        self,
        feats: list[torch.Tensor],
        heads: HeadBatch,
        device: torch.device,
        options: list[DecodeOptions] | None = None,
    ) -> list[Transcript]:
        options = options or [DecodeOptions()] * len(feats)
        lengths = torch.tensor([f.shape[0] for f in feats], device=device)
        inputs = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(device)
        encoded, enc_lengths = self.model(inputs, lengths, heads)
        durations = [f.shape[0] * frontend.HOP / frontend.SAMPLE_RATE for f in feats]
        return decode(
            self.whisper,
            encoded,
            enc_lengths,
            self.timestamps,
            self.max_tokens,
            durations,
            [o.language for o in options],
            [o.words for o in options],
            [o.prompt for o in options],
            [o.temperature for o in options],
            self.fallback,
            self.limits,
        )

    def decode(self, output: list[Transcript], row: int, head: HeadRecord | None) -> Decoded:
        t = output[row]
        if t.over_budget:
            exc = DecodeBudgetExceeded(
                f"decoding this audio needed more than its budget of {t.spent} tokens (all "
                "fallback attempts together; HRA_WHISPER__DECODE_BUDGET_PER_S per second)"
            )
            exc.steps = t.spent  # what it cost all the same: charged to its tenant
            raise exc
        kept = [i for i, s in enumerate(t.segments) if s.text.strip()]
        index = {i: k for k, i in enumerate(kept)}  # a word's segment among those kept
        segments = [
            SegmentTiming(t.segments[i].start, t.segments[i].end, t.segments[i].text.strip())
            for i in kept
        ]
        words = [
            WordTiming(w.word, w.start, w.end, None if w.segment is None else index.get(w.segment))
            for w in t.words
        ]
        return Decoded(
            text=t.text,
            words=words,
            num_frames=len(t.tokens),
            segments=segments,
            avg_logprob=t.avg_logprob if math.isfinite(t.avg_logprob) else None,
            no_speech_prob=t.no_speech_prob,
            language=t.language,
            temperature=t.temperature,
            steps=t.spent,
        )
