"""HRA over the decoder's depth (the decoder-heads experiment): exact no-ops and per-row heads."""

from __future__ import annotations

import torch

from server.models.whisper.decoder_hra import DecoderHRA
from server.models.whisper.decoding import batch_features


def _logits(model, clips, hook):
    with torch.inference_mode():
        encoded, _ = model.encoder(*batch_features(model.encoder, clips))
        state = model.decoder.start(encoded, None)
        prompt = torch.tensor([model.tokenizer.prompt(False)] * len(clips))
        logits, state = model.decoder(prompt, state, adapt=hook)
        step = logits[:, -1].argmax(-1)[:, None]
        more, _ = model.decoder(step, state, adapt=hook)  # a cached step adapts its token
    return torch.cat([logits, more], dim=1)


def test_zero_decoder_heads_leave_whisper_exactly_unchanged(whisper_model, english_clips):
    clips = [c for c, _ in english_clips[:2]]
    torch.manual_seed(0)
    dec = DecoderHRA(384, 64)
    plain = _logits(whisper_model, clips, None)
    zero = _logits(whisper_model, clips, dec.bind(torch.zeros(2, 384, 64)))
    assert torch.equal(plain, zero)


def test_each_row_gets_its_own_decoder_head_as_if_alone(whisper_model, english_clips):
    clips = [c for c, _ in english_clips[:2]]
    torch.manual_seed(0)
    dec = DecoderHRA(384, 64)
    g = torch.Generator().manual_seed(3)
    heads = torch.stack([torch.randn(384, 64, generator=g) * 0.05, torch.zeros(384, 64)])
    mixed = _logits(whisper_model, clips, dec.bind(heads))
    for b in range(2):
        alone = _logits(whisper_model, clips[b : b + 1], dec.bind(heads[b : b + 1]))
        torch.testing.assert_close(mixed[b], alone[0], atol=2e-4, rtol=2e-4)
    plain = _logits(whisper_model, clips[:1], None)
    assert (mixed[0] - plain[0]).abs().max() > 1e-3  # the random head acts; the zero one not
    torch.testing.assert_close(
        mixed[1], _logits(whisper_model, clips[1:], None)[0], atol=2e-4, rtol=2e-4
    )
