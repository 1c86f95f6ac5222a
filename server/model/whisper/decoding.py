"""Batched greedy decoding with a KV cache: one encoder pass, then one fused step per token.

Semantics (per utterance, as openai-whisper's greedy DecodingTask):
    prompt          <|startoftranscript|> [<|lang|> <|transcribe|>] [<|notimestamps|>]
                    (multilingual models: the row's language, or, when none is asked,
                    the language token most likely after <|startoftranscript|>, as
                    openai-whisper's detect_language; <|startoftranscript|> goes
                    through the decoder first, alone, then the rest of the prompt)
    no_speech_prob  softmax(logits at <|startoftranscript|>)[<|nocaptions|>]
    each step       l = logits with suppressed tokens at -inf (+ timestamp rules);
                    token = argmax l;  logprob = log_softmax(l)[token]
    stop            at <|endoftext|> or after max_tokens
    avg_logprob     mean logprob of the emitted tokens, <|endoftext|> included
Every step is one decoder forward over the utterances still live; a finished
utterance leaves the batch (its rows dropped from the caches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from server.model.adapters import HeadBatch
from server.model.backbone import padding_mask
from server.model.hra import HRAModel
from server.model.whisper.alignment import AlignRequest, WordTime, align_words
from server.model.whisper.decoder import DecoderState
from server.model.whisper.encoder import WhisperEncoder, additive_mask
from server.model.whisper.model import WhisperModel
from server.model.whisper.timestamps import Segment, apply_timestamp_rules, segments_of


@dataclass
class Transcript:
    text: str
    tokens: list[int]  # emitted tokens, timestamps included, <|endoftext|> excluded
    avg_logprob: float
    no_speech_prob: float
    segments: list[Segment] = field(default_factory=list)
    language: str | None = None  # the prompt's language (None: an English-only model)
    words: list[WordTime] = field(default_factory=list)  # when asked (alignment.py)


def batch_features(
    encoder: WhisperEncoder, waveforms: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Featurize each clip alone, then pad: inputs [B, T_in, 80], lengths [B]."""
    feats = [encoder.featurize(w) for w in waveforms]
    lengths = torch.tensor([f.shape[0] for f in feats])
    inputs = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    return inputs, lengths


@torch.inference_mode()
def transcribe(
    model: WhisperModel,
    waveforms: Sequence[torch.Tensor],
    timestamps: bool = False,
    max_tokens: int = 224,
    hra: HRAModel | None = None,
    heads: HeadBatch | None = None,
    languages: Sequence[str | None] | None = None,
    words: Sequence[bool] | None = None,
    previous: Sequence[str | None] | None = None,
) -> list[Transcript]:
    """16 kHz clips (each at most 30 s) -> one Transcript per clip, in order.

    With `hra` (an HRAModel over model.encoder) the encoder runs with one head per
    utterance from `heads` (None entries: plain Whisper), in the same single pass."""
    inputs, lengths = batch_features(model.encoder, waveforms)
    if hra is not None:
        if hra.backbone is not model.encoder:
            raise ValueError("hra must wrap this model's encoder")
        encoded, enc_lengths = hra(inputs, lengths, heads)
    else:
        encoded, enc_lengths = model.encoder(inputs, lengths)
    durations = [w.numel() / 16_000 for w in waveforms]
    return decode(
        model, encoded, enc_lengths, timestamps, max_tokens, durations, languages, words, previous
    )


@torch.inference_mode()
def decode(
    model: WhisperModel,
    encoded: torch.Tensor,  # [B, S, D] encoder output
    lengths: torch.Tensor,  # [B] valid encoder states per row
    timestamps: bool = False,
    max_tokens: int = 224,
    durations: Sequence[float] | None = None,
    languages: Sequence[str | None] | None = None,
    words: Sequence[bool] | None = None,
    previous: Sequence[str | None] | None = None,
) -> list[Transcript]:
    """`languages[i]`: row i's language code (None: detect it; English-only models take
    only None or "en"); `words[i]`: whether row i wants word times (needs durations);
    `previous[i]`: row i's prompt text (openai-whisper's initial_prompt: its last 223
    tokens after <|startofprev|>, before the prompt; None: none)."""
    tok, dec = model.tokenizer, model.decoder
    b, s, _ = encoded.shape
    pad = padding_mask(lengths, s)
    memory_mask = additive_mask(pad, encoded.dtype) if bool(pad.any()) else None
    start = dec.start(encoded, memory_mask)
    langs = list(languages) if languages is not None else [None] * b
    prev = [tok.previous(p) for p in (previous or [None] * b)]
    state, done = start, 0  # prompt tokens already through the decoder
    if tok.multilingual and None in langs:  # detect: <|startoftranscript|> alone first
        sot = torch.full((b, 1), tok.sot, dtype=torch.long, device=encoded.device)
        logits, after_sot = dec(sot, start)
        ids = sorted(tok.language_of)
        detected = logits[:, 0].float()[:, ids].argmax(dim=-1).tolist()
        langs = [lang or tok.language_of[ids[d]] for lang, d in zip(langs, detected)]
        if not any(prev):
            state, first, done = after_sot, logits[:, 0].float(), 1
    prompts = [tok.prompt(timestamps, lang) for lang in langs]
    if any(prev):  # <|startofprev|> text... then the prompt, rows left-padded
        rows = [p + q for p, q in zip(prev, prompts)]
        width = max(len(r) for r in rows)
        pad = torch.tensor([width - len(r) for r in rows], device=encoded.device)
        batch = torch.tensor([[tok.eot] * (width - len(r)) + r for r in rows])
        state = DecoderState(start.memory, start.memory_mask, None, 0, pad)
        logits, state = dec(batch.to(encoded.device), state)
        at_sot = pad + torch.tensor([len(p) for p in prev], device=encoded.device)
        first = logits[torch.arange(b, device=encoded.device), at_sot].float()
        prompts = [[tok.eot] * (width - len(r)) + r for r in rows]
    elif done < len(prompts[0]):
        rest = torch.tensor([p[done:] for p in prompts], device=encoded.device)
        logits, state = dec(rest, state)
        first = logits[:, 0].float() if done == 0 else first
    no_speech = torch.softmax(first, dim=-1)[:, tok.no_speech]
    step_logits = logits[:, -1].float()
    prompt = torch.tensor(prompts)

    suppress = sorted(set(model.config.suppress_ids) | set(tok.special_ids()))
    max_tokens = min(max_tokens, dec.max_positions - prompt.shape[1])
    live = torch.arange(b)  # original row of each live utterance
    emitted: list[list[int]] = [[] for _ in range(b)]
    logprob_sums = [0.0] * b
    for step in range(max_tokens):
        masked = step_logits.clone()
        masked[:, suppress] = float("-inf")
        if step == 0:
            masked[:, list(model.config.suppress_ids_begin)] = float("-inf")
        if timestamps:
            apply_timestamp_rules(masked, [emitted[int(r)] for r in live], tok, step == 0)
        logprobs = torch.log_softmax(masked, dim=-1)
        chosen = masked.argmax(dim=-1)  # [B_live]
        chosen_lp = logprobs.gather(1, chosen[:, None])[:, 0]
        for j, row in enumerate(live.tolist()):
            emitted[row].append(int(chosen[j]))
            logprob_sums[row] += float(chosen_lp[j])
        keep = chosen != tok.eot
        if step == max_tokens - 1 or not bool(keep.any()):
            break
        if not bool(keep.all()):
            rows = keep.nonzero()[:, 0]
            state, live, chosen = state.select(rows), live[rows], chosen[rows]
        step_logits, state = dec(chosen[:, None], state)
        step_logits = step_logits[:, -1].float()

    out = []
    for row in range(b):
        tokens = [t for t in emitted[row] if t != tok.eot]
        duration = durations[row] if durations is not None else None
        out.append(
            Transcript(
                text=tok.decode(tokens).strip(),
                tokens=tokens,
                avg_logprob=logprob_sums[row] / max(1, len(emitted[row])),
                no_speech_prob=float(no_speech[row]),
                segments=segments_of(tokens, tok, duration) if timestamps else [],
                language=langs[row] if tok.multilingual else None,
            )
        )
    wanted = [r for r in range(b) if words is not None and words[r] and durations is not None]
    if wanted:
        requests = [
            AlignRequest(
                r,
                [t for t in tok.prompt(timestamps, langs[r]) if t != tok.no_timestamps],
                out[r].tokens,
                float(durations[r]),
                out[r].segments,
                langs[r] or "en",
            )
            for r in wanted
        ]
        timed = align_words(dec, tok, model.config.alignment_heads, start, requests)
        for r, found in zip(wanted, timed):
            out[r].words = found
    return out
