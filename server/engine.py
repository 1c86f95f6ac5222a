"""The engine: one per device, run from its own thread, one fused forward per batch.

It knows nothing of queues or HTTP: it takes a list of (features, head) and
returns transcripts. Heads are placed in the device slot pool and the whole
mixed-task batch runs as one forward pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

import kernels
from adapters_store.head_format import HeadRecord
from server.audio import Audio
from server.model.decoding import Decoded, greedy_decode
from server.model.features import SAMPLE_RATE, pad_features
from server.model.hra import HRAModel
from server.model.tokenizer import CharTokenizer
from server.slot_pool import DeviceSlotPool

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineInput:
    audio: Audio  # resampled and featurized here: the engine's thread does all torch work
    head: HeadRecord | None  # None: backbone only (task "base")


class Engine:
    def __init__(self, model: HRAModel, slots: DeviceSlotPool) -> None:
        self.model = model.eval()
        self.slots = slots
        self.device = slots.device
        self.tokenizer = CharTokenizer()
        self.frame_seconds = model.backbone.frame_seconds
        self.forward_passes = 0
        on, reason = kernels.enable_triton(self.device)
        logger.info("Triton head kernel: %s (%s)", "on" if on else "off", reason)

    def featurize(self, audio: Audio) -> torch.Tensor:
        return self.model.backbone.featurize(audio.at_model_rate())

    @torch.inference_mode()
    def run(self, batch: list[EngineInput]) -> list[Decoded]:
        inputs, lengths = pad_features([self.featurize(item.audio) for item in batch])
        head_batch = self.slots.head_batch([item.head for item in batch])
        logits, out_lengths = self.model(
            inputs.to(self.device), lengths.to(self.device), head_batch
        )
        self.forward_passes += 1
        return greedy_decode(logits, out_lengths, self.tokenizer)

    def warm_up(self) -> None:
        """One tiny forward so the first request does not pay for lazy init."""
        self.run([EngineInput(Audio(torch.zeros(SAMPLE_RATE), SAMPLE_RATE), None)])
        self.forward_passes = 0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
