"""Each backbone states the fewest samples it can process, and that number is exact."""

from __future__ import annotations

import pytest
import torch

from server.models.ctc.conformer import ConformerConfig, ConformerCTC
from server.models.hf.wav2vec2 import Wav2Vec2Backbone
from tests.server.models.hf.test_wav2vec2 import SMALL


def _embeds(backbone, samples: int) -> int:
    """Frames the backbone makes of `samples` random samples; 0 where it cannot."""
    try:
        feats = backbone.featurize(torch.randn(samples))
        _, lengths = backbone.embed(feats[None], torch.tensor([feats.shape[0]]))
    except RuntimeError:
        return 0
    return int(lengths[0])


@pytest.mark.parametrize(
    "backbone",
    [
        ConformerCTC(ConformerConfig(hidden_dim=48, num_layers=1, num_heads=2, ffn_dim=96)),
        Wav2Vec2Backbone("wav2vec2_model", **SMALL),
        Wav2Vec2Backbone("wav2vec2_base"),
    ],
    ids=["conformer", "wav2vec2-small", "wav2vec2-base"],
)
@torch.inference_mode()
def test_min_samples_is_the_shortest_waveform_the_backbone_turns_into_a_frame(backbone):
    backbone.eval()
    assert _embeds(backbone, backbone.min_samples) >= 1
    assert _embeds(backbone, backbone.min_samples - 1) == 0
