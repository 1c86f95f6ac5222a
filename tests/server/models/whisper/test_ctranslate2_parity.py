"""Our torch Whisper against the ctranslate2 runtime on the same model.bin and features.

Both run the fp16 weights in float32 on the CPU, so agreement is far inside fp16
tolerance (measured: encoder 2e-5, logits ~1e-4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.models.whisper import frontend
from server.models.whisper.decoding import batch_features, transcribe

ctranslate2 = pytest.importorskip("ctranslate2")

FP16_ATOL = 1e-2  # fp16 has ~3 decimal digits; our float32 math sits far inside this


@pytest.fixture(scope="module")
def ct_model(whisper_files):
    return ctranslate2.models.Whisper(
        str(whisper_files.root), device="cpu", compute_type="float32", intra_threads=2
    )


@pytest.fixture(scope="module")
def windows(whisper_model, english_clips):
    """The clips as Whisper's 30 s mel windows [B, 80, 3000] plus our padded inputs."""
    enc = whisper_model.encoder
    inputs, lengths = batch_features(enc, [w for w, _ in english_clips[:2]])
    full = enc.whisper_window(inputs, lengths)
    return inputs, lengths, np.ascontiguousarray(full.transpose(1, 2).numpy())


def test_encoder_output_matches_ctranslate2_within_fp16_tolerance(whisper_model, ct_model, windows):
    inputs, lengths, mel = windows
    theirs = np.array(ct_model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))
    with torch.inference_mode():
        ours, _ = whisper_model.encoder(inputs, lengths)
    assert ours.shape == theirs.shape == (2, 1500, 384)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=FP16_ATOL, rtol=0)


def test_decoder_logits_match_ctranslate2_at_every_greedy_step(whisper_model, ct_model, windows):
    inputs, lengths, mel = windows
    prompt = whisper_model.tokenizer.prompt(timestamps=False)
    result = ct_model.generate(
        ctranslate2.StorageView.from_array(mel[:1]),
        [prompt],
        beam_size=1,
        return_logits_vocab=True,
    )[0]
    tokens = result.sequences_ids[0]
    steps = [np.array(step) for step in result.logits[0]]  # per emitted token (eot too)
    with torch.inference_mode():
        encoded, _ = whisper_model.encoder(inputs[:1], lengths[:1])
        state = whisper_model.decoder.start(encoded, None)
        teacher = torch.tensor([prompt + tokens])
        logits, _ = whisper_model.decoder(teacher, state)
    ours = logits[0, len(prompt) - 1 :].numpy()  # the logits that chose each token
    assert len(steps) == len(tokens) + 1
    for i, theirs in enumerate(steps):
        kept = theirs > -1e30  # ctranslate2 reports suppressed tokens at -FLT_MAX
        assert kept.sum() > 50_000
        np.testing.assert_allclose(ours[i][kept], theirs[kept], atol=FP16_ATOL, rtol=0)


def test_greedy_tokens_logprob_and_no_speech_prob_equal_ctranslate2(
    whisper_model, ct_model, english_clips, windows
):
    """avg_logprob as Whisper defines it: mean log_softmax of the *filtered* logits over
    the emitted tokens, end included; recomputed here from ctranslate2's filtered logits.
    (ctranslate2's own `scores` normalise over the unfiltered vocabulary, ~1% lower.)"""
    _, _, mel = windows
    prompt = whisper_model.tokenizer.prompt(timestamps=False)
    theirs = ct_model.generate(
        ctranslate2.StorageView.from_array(mel),
        [prompt, prompt],
        beam_size=1,
        return_logits_vocab=True,
        return_no_speech_prob=True,
    )
    ours = transcribe(whisper_model, [w for w, _ in english_clips[:2]])
    for o, t in zip(ours, theirs):
        assert o.tokens == t.sequences_ids[0]
        emitted = [*o.tokens, whisper_model.tokenizer.eot]
        steps = torch.tensor(np.stack([np.array(x) for x in t.logits[0]]))
        logprobs = torch.log_softmax(steps.double(), dim=-1)
        expected = logprobs[torch.arange(len(emitted)), emitted].mean().item()
        assert o.avg_logprob == pytest.approx(expected, abs=1e-3)
        assert o.no_speech_prob == pytest.approx(t.no_speech_prob, abs=1e-4)


def test_window_constant_is_whispers_30_seconds():
    assert frontend.WINDOW_FRAMES * frontend.HOP == 30 * frontend.SAMPLE_RATE
