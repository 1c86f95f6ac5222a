"""The CPU fast paths of the Conformer compute exactly what the plain modules do."""

import pytest
import torch
from torch import nn

from server.models.ctc.conformer import ConvSubsampling, depthwise_conv


@pytest.mark.parametrize("bias", [True, False])
def test_depthwise_shift_add_equals_conv1d(bias):
    torch.manual_seed(0)
    conv = nn.Conv1d(16, 16, 15, padding=7, groups=16, bias=bias)
    x = torch.randn(3, 16, 41)
    assert torch.allclose(depthwise_conv(conv, x), conv(x), atol=1e-5)


def test_chunked_subsampling_equals_whole_batch(monkeypatch):
    torch.manual_seed(0)
    sub = ConvSubsampling(64, 8, 32).eval()
    feats, lengths = torch.randn(7, 50, 64), torch.tensor([50, 41, 13, 50, 30, 2, 49])
    whole, whole_lengths = sub(feats, lengths)
    monkeypatch.setattr(ConvSubsampling, "CHUNK_FRAMES", 100)  # chunks of 2 utterances
    chunked, chunked_lengths = sub(feats, lengths)
    assert torch.equal(whole_lengths, chunked_lengths)
    assert torch.allclose(whole, chunked, atol=1e-6)
