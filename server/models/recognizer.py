"""What the engine asks of a model: featurize one clip, run one fused batch, decode a row.

The engine (server/serving/engine.py) owns batching policy, failure isolation, device slots
and threads; a Recognizer owns everything model-specific. Two implementations:
    CtcRecognizer      the HRA CTC backbones (Conformer, wav2vec2): one fused forward,
                       greedy CTC per row, or a word-loop decode within the head's
                       vocabulary, handed back as a deferred call for the decoder thread
    WhisperRecognizer  server/models/whisper/recognizer.py: one encoder pass with the
                       per-utterance heads, then batched greedy decoding
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, Protocol

import torch

from adapters_store.head_format import HeadRecord
from server.audio.reading import Audio
from server.models.adapters import HeadBatch
from server.models.ctc.greedy import Decoded, DecodeOptions, FramePosteriors
from server.models.ctc.inference import decode_one, decode_within, forward_padded, log_probs_of
from server.models.hra import HRAModel
from server.serving.length_buckets import CPU_FORWARD_OVERHEAD_FRAMES, NEVER_SPLIT

Deferred = Callable[[], Decoded]  # a decode to run on the engine's decoder thread
RowResult = Decoded | Deferred


class Recognizer(Protocol):
    model: HRAModel  # backbone + controller: what heads are bound to
    frame_seconds: float  # one output frame, in seconds
    min_samples: int  # shortest clip at SAMPLE_RATE the front end can featurize
    max_seconds: float | None  # longest clip one pass takes (None: no bound of its own)
    vocabularies: bool  # whether a head's vocabulary constrains decoding
    languages: tuple[str, ...]  # language codes a request may name (DecodeOptions.language)

    def forward_overhead_frames(self, device: torch.device) -> int:
        """Default cost of one more fused pass in feature frames (length buckets)."""
        ...

    def featurize(self, audio: Audio, device: torch.device) -> torch.Tensor:
        """One clip -> features [T_in, F] on `device`."""
        ...

    def forward(
        self,
        feats: list[torch.Tensor],
        heads: HeadBatch,
        device: torch.device,
        options: list[DecodeOptions] | None = None,
    ) -> Any:
        """One fused pass over utterances with per-utterance heads (and each one's decode
        options; None: defaults): an opaque batch output.
        Whatever can fail for the batch as a whole fails here (the engine bisects it)."""
        ...

    def decode(self, output: Any, row: int, head: HeadRecord | None) -> RowResult:
        """Row `row` of `output` -> its transcript, or a deferred decode."""
        ...


class CtcRecognizer:
    """The CTC backbones, as the engine served them before recognizers existed."""

    vocabularies = True
    max_seconds = None
    languages = ("en",)

    def __init__(self, model: HRAModel) -> None:
        self.model = model.eval()
        self.frame_seconds = model.backbone.frame_seconds
        self.min_samples = model.backbone.min_samples

    def forward_overhead_frames(self, device: torch.device) -> int:
        # measured on CPU; on a GPU, one pass per batch
        return CPU_FORWARD_OVERHEAD_FRAMES if device.type == "cpu" else NEVER_SPLIT

    def featurize(self, audio: Audio, device: torch.device) -> torch.Tensor:
        """Resampled on the host (bounded polyphase), featurized where the model lives."""
        return self.model.backbone.featurize(audio.at_model_rate().to(device))

    def forward(
        self,
        feats: list[torch.Tensor],
        heads: HeadBatch,
        device: torch.device,
        options: list[DecodeOptions] | None = None,  # English only; words always come
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return forward_padded(self.model, feats, heads, device)

    def decode(
        self, output: tuple[torch.Tensor, torch.Tensor], row: int, head: HeadRecord | None
    ) -> RowResult:
        logits, lengths = output
        valid = logits[row, : int(lengths[row])]
        frames = FramePosteriors.of(valid, self.frame_seconds)
        vocabulary = head.meta.vocabulary if head is not None else ()
        if vocabulary:
            within = partial(decode_within, log_probs_of(valid), vocabulary, self.frame_seconds)
            return partial(_with_frames, within, frames)
        return replace(decode_one(valid, (), self.frame_seconds), frames=frames)


def _with_frames(decode: Deferred, frames: FramePosteriors) -> Decoded:
    return replace(decode(), frames=frames)
