"""What the engine asks of a model: featurize one clip, run one fused batch, decode a row.

The engine (server/serving/engine.py) owns batching policy, failure isolation, device slots
and threads; a Recognizer owns everything model-specific. Two implementations:
    CtcRecognizer      server/models/ctc/recognizer.py: the HRA CTC backbones (Conformer,
                       wav2vec2, NeMo): one fused forward, greedy CTC per row, or a word-loop
                       decode within the head's vocabulary, handed back as a deferred call
                       for the decoder thread
    WhisperRecognizer  server/models/whisper/recognizer.py: one encoder pass with the
                       per-utterance heads, then batched greedy decoding
The model kind of a model directory picks and loads one (server/models/registry.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadRecord
from server.audio.reading import Audio
from server.models.hra import HRAModel
from server.models.transcript import Decoded, DecodeOptions

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
