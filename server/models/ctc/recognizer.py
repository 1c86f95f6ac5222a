"""The CTC backbones as the engine serves them: one fused forward, greedy CTC per row."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch

from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadRecord
from server.audio.reading import Audio
from server.models.ctc.inference import decode_one, decode_within, forward_padded, log_probs_of
from server.models.ctc.tokenizer import BLANK
from server.models.hra import HRAModel
from server.models.length_buckets import CPU_FORWARD_OVERHEAD_FRAMES, NEVER_SPLIT
from server.models.recognizer import Deferred, RowResult
from server.models.transcript import Decoded, DecodeOptions, FramePosteriors


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
        frames = FramePosteriors.of(valid, self.frame_seconds, BLANK)
        vocabulary = head.meta.vocabulary if head is not None else ()
        if vocabulary:
            within = partial(decode_within, log_probs_of(valid), vocabulary, self.frame_seconds)
            return partial(_with_frames, within, frames)
        return replace(decode_one(valid, (), self.frame_seconds), frames=frames)


def _with_frames(decode: Deferred, frames: FramePosteriors) -> Decoded:
    return replace(decode(), frames=frames)
