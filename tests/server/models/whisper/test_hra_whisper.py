"""HRA on Whisper's encoder: the shared controller and per-utterance heads on every layer."""

from __future__ import annotations

import pytest
import torch

from adapters_store.families import ModelDims, head_shapes, init_head
from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadType
from server.models.hra import HRAModel
from server.models.whisper.decoding import batch_features, transcribe

CONTROLLER_DIM = 64


@pytest.fixture(scope="module")
def hra(whisper_model):
    torch.manual_seed(0)
    return HRAModel(whisper_model.encoder, CONTROLLER_DIM).eval()


def dims(model) -> ModelDims:
    return ModelDims(model.encoder.hidden_dim, CONTROLLER_DIM, model.encoder.num_layers)


def random_head(model, head_type: HeadType, seed: int, scale: float = 0.05):
    g = torch.Generator().manual_seed(seed)
    enc = model.encoder
    shapes = head_shapes(head_type, enc.hidden_dim, CONTROLLER_DIM, 8, enc.num_layers)
    return head_type, {k: torch.randn(s, generator=g) * scale for k, s in shapes.items()}


@pytest.mark.parametrize("head_type", [HeadType.LINEAR, HeadType.FFN, HeadType.RESIDUAL])
def test_a_new_zero_initialised_head_leaves_whisper_unchanged(
    whisper_model, hra, english_clips, head_type
):
    clip = english_clips[2][0]
    head = (head_type, init_head(head_type, dims(whisper_model), 8))
    with torch.inference_mode():
        inputs, lengths = batch_features(whisper_model.encoder, [clip])
        plain, _ = whisper_model.encoder(inputs, lengths)
        adapted, _ = hra(inputs, lengths, HeadBatch.from_heads([head]))
    torch.testing.assert_close(adapted, plain, atol=1e-5, rtol=0)


def test_a_trained_looking_head_changes_the_encoder_output(whisper_model, hra, english_clips):
    clip = english_clips[2][0]
    with torch.inference_mode():
        inputs, lengths = batch_features(whisper_model.encoder, [clip])
        plain, _ = whisper_model.encoder(inputs, lengths)
        head = random_head(whisper_model, HeadType.LINEAR, 3, scale=0.5)
        adapted, _ = hra(inputs, lengths, HeadBatch.from_heads([head]))
    assert (adapted - plain).abs().max() > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("window", ["pad", "cut"])
def test_mixed_batch_of_different_heads_equals_each_utterance_run_alone(
    whisper_model, hra, english_clips, fsdd_clips, window
):
    clips = [english_clips[0][0], fsdd_clips[0][0], english_clips[3][0], fsdd_clips[1][0]]
    heads = [
        random_head(whisper_model, HeadType.LINEAR, 1),
        random_head(whisper_model, HeadType.FFN, 2),
        random_head(whisper_model, HeadType.RESIDUAL, 3),
        None,  # task "base": plain Whisper
    ]
    whisper_model.window = window
    try:
        with torch.inference_mode():
            inputs, lengths = batch_features(whisper_model.encoder, clips)
            batched, out_lengths = hra(inputs, lengths, HeadBatch.from_heads(heads))
            for b, (clip, head) in enumerate(zip(clips, heads)):
                alone, alone_len = hra(
                    *batch_features(whisper_model.encoder, [clip]), HeadBatch.from_heads([head])
                )
                n = int(alone_len[0])
                assert int(out_lengths[b]) == n
                torch.testing.assert_close(batched[b, :n], alone[0, :n], atol=1e-4, rtol=1e-4)
        together = transcribe(whisper_model, clips, hra=hra, heads=HeadBatch.from_heads(heads))
        solo = [
            transcribe(whisper_model, [c], hra=hra, heads=HeadBatch.from_heads([h]))[0]
            for c, h in zip(clips, heads)
        ]
    finally:
        whisper_model.window = "pad"
    assert [t.tokens for t in together] == [s.tokens for s in solo]
