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

Temperature fallback (openai-whisper's transcribe, when `temperatures` is given): a
row decoded at temperature t whose text is too repetitive (compression ratio > 2.4) or
too unlikely (avg_logprob < -1, unless no_speech_prob > 0.6: silence) is decoded again,
from the same prompt state, at t + 0.2, ... up to 1.0, sampling from softmax(l / t);
it keeps the first attempt that passes; when none does, the likeliest attempt that does
not loop (faster-whisper's rule; openai-whisper keeps the last, a temperature-1.0
sample, which on our short clips was measured worse). The rows that fall back are
decoded together, each with its own temperature. Sampling draws from a generator per
row seeded by the attempt number only, so a row's draws never depend on its batch.

Bounded cost (`DecodeLimits`, every bound per row, so a row's result never depends on
its batch):
    one attempt     at most max(min_tokens, ceil(tokens_per_s x seconds)) tokens (and
                    max_tokens): Whisper emits 2.5 tokens/s on JFK's speech and 4-6 for
                    one FSDD digit, timestamps included (measured), so 12/s is a loop
    attempts        at most max_attempts decodes of a row (the schedule cut there)
    budget          tokens summed over a row's attempts, at most max(min_budget,
                    ceil(budget_per_s x seconds)); an attempt gets what is left of it,
                    and a row that needs more (an attempt cut by the budget, or a fallback
                    attempt with nothing left) stops and is marked `over_budget`: its
                    request fails alone with `decode_budget_exceeded`
    prompt          its last max_prompt_tokens tokens (Whisper keeps 223)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from adapters_store.head_batch import HeadBatch
from server.models.backbone import padding_mask
from server.models.hra import HRAModel
from server.models.transcript import compression_ratio
from server.models.whisper.alignment import AlignRequest, WordTime, align_words
from server.models.whisper.decoder import DecoderState
from server.models.whisper.encoder import WhisperEncoder, additive_mask
from server.models.whisper.model import WhisperModel
from server.models.whisper.timestamps import Segment, apply_timestamp_rules, segments_of


@dataclass
class Transcript:
    text: str
    tokens: list[int]  # emitted tokens, timestamps included, <|endoftext|> excluded
    avg_logprob: float
    no_speech_prob: float
    segments: list[Segment] = field(default_factory=list)
    language: str | None = None  # the prompt's language (None: an English-only model)
    words: list[WordTime] = field(default_factory=list)  # when asked (alignment.py)
    temperature: float = 0.0  # the attempt kept (fallback: the first that passed, or the last)
    spent: int = 0  # tokens decoded over every attempt, <|endoftext|> included
    over_budget: bool = False  # stopped by its DecodeLimits budget (module docstring)


@dataclass(frozen=True)
class DecodeLimits:
    """What decoding one row may cost, by its audio's length (module docstring)."""

    tokens_per_s: float = 12.0
    min_tokens: int = 32
    max_attempts: int = 6
    budget_per_s: float = 40.0
    min_budget: int = 384
    max_prompt_tokens: int = 223

    def tokens(self, seconds: float) -> int:
        """Most tokens one attempt of a row this long may emit."""
        return max(self.min_tokens, math.ceil(self.tokens_per_s * seconds))

    def budget(self, seconds: float) -> int:
        """Most tokens all attempts of a row this long may emit together."""
        return max(self.min_budget, math.ceil(self.budget_per_s * seconds))


UNLIMITED = DecodeLimits(0.0, 1 << 30, 1 << 30, 0.0, 1 << 30)  # max_tokens alone bounds a row


FALLBACK_STEP = 0.2  # openai-whisper's temperature_increment_on_fallback
MAX_COMPRESSION_RATIO = 2.4
MIN_AVG_LOGPROB = -1.0
NO_SPEECH_THRESHOLD = 0.6
SAMPLING_SEED = 0x5EED


def temperature_schedule(start: float) -> list[float]:
    """start, start + 0.2, ... <= 1.0: the temperatures one row may be decoded at."""
    levels = int((1.0 - start) / FALLBACK_STEP + 1e-6)  # floor: never past 1.0
    return [round(start + i * FALLBACK_STEP, 6) for i in range(max(0, levels) + 1)]


def needs_fallback(text: str, avg_logprob: float, no_speech_prob: float) -> bool:
    """openai-whisper's test: a loop or an unlikely decode, unless it is silence."""
    unlikely = avg_logprob < MIN_AVG_LOGPROB
    if unlikely and no_speech_prob > NO_SPEECH_THRESHOLD:
        return False
    return unlikely or compression_ratio(text) > MAX_COMPRESSION_RATIO


def best_attempt(attempts: list[Transcript]) -> Transcript:
    """When every attempt failed: the likeliest one that does not loop (any, if all loop)."""
    calm = [t for t in attempts if compression_ratio(t.text) <= MAX_COMPRESSION_RATIO]
    return max(calm or attempts, key=lambda t: t.avg_logprob)


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
    temperatures: Sequence[float] | None = None,
    fallback: bool = True,
    limits: DecodeLimits = UNLIMITED,
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
        model,
        encoded,
        enc_lengths,
        timestamps,
        max_tokens,
        durations,
        languages,
        words,
        previous,
        temperatures,
        fallback,
        limits,
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
    temperatures: Sequence[float] | None = None,
    fallback: bool = True,
    limits: DecodeLimits = UNLIMITED,
) -> list[Transcript]:
    """`languages[i]`: row i's language code (None: detect it; English-only models take
    only None or "en"); `words[i]`: whether row i wants word times (needs durations);
    `previous[i]`: row i's prompt text (openai-whisper's initial_prompt: its last 223
    tokens after <|startofprev|>, before the prompt; None: none); `temperatures[i]`:
    row i's first temperature (None: 0 for every row), with the fallback (module
    docstring) when `temperatures` is given and `fallback` is True; `limits`: each row's
    bounds, by its duration (module docstring; UNLIMITED: max_tokens alone)."""
    tok, dec = model.tokenizer, model.decoder
    b, s, _ = encoded.shape
    pad = padding_mask(lengths, s)
    memory_mask = additive_mask(pad, encoded.dtype) if bool(pad.any()) else None
    start = dec.start(encoded, memory_mask)
    langs = list(languages) if languages is not None else [None] * b
    prev = [tok.previous(p, limits.max_prompt_tokens) for p in (previous or [None] * b)]
    prompted = _run_prompts(model, start, langs, prev, timestamps, encoded.device)
    suppress = sorted(set(model.config.suppress_ids) | set(tok.special_ids()))
    max_tokens = min(max_tokens, dec.max_positions - prompted.width)
    run = _Sampler(model, timestamps, suppress)
    seconds = list(durations) if durations is not None else [30.0] * b
    caps = [min(max_tokens, limits.tokens(d)) for d in seconds]
    budgets = [limits.budget(d) for d in seconds]
    schedules = [s[: limits.max_attempts] for s in _schedules(b, temperatures, fallback)]
    out = _decode_with_fallback(run, prompted, schedules, caps, budgets)
    for row in range(b):
        out[row].language = prompted.languages[row] if tok.multilingual else None
        if timestamps:
            duration = durations[row] if durations is not None else None
            out[row].segments = segments_of(out[row].tokens, tok, duration)
    wanted = [
        r
        for r in range(b)
        if words is not None and words[r] and durations is not None and not out[r].over_budget
    ]
    if wanted:
        _add_word_times(model, start, out, wanted, prompted.languages, timestamps, durations)
    return out


@dataclass
class _Prompted:
    """The decoder state after each row's prompt: where every decoding attempt starts."""

    state: DecoderState  # the cache through the prompt
    step_logits: torch.Tensor  # [B, V] float32 logits after the prompt's last token
    no_speech: torch.Tensor  # [B] softmax(logits at <|startoftranscript|>)[<|nocaptions|>]
    languages: list[str | None]  # each row's, detected where none was asked
    width: int  # prompt tokens per row, left padding included


def _run_prompts(
    model: WhisperModel,
    start: DecoderState,
    langs: list[str | None],
    prev: list[list[int]],
    timestamps: bool,
    device: torch.device,
) -> _Prompted:
    """[<|startofprev|> text] <|startoftranscript|> [<|lang|> <|transcribe|>]
    [<|notimestamps|>] through the decoder, every row at once (module docstring)."""
    tok, dec = model.tokenizer, model.decoder
    b = len(langs)
    state, done = start, 0  # prompt tokens already through the decoder
    if tok.multilingual and None in langs:  # detect: <|startoftranscript|> alone first
        sot = torch.full((b, 1), tok.sot, dtype=torch.long, device=device)
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
        pad = torch.tensor([width - len(r) for r in rows], device=device)
        batch = torch.tensor([[tok.eot] * (width - len(r)) + r for r in rows])
        state = DecoderState(start.memory, start.memory_mask, None, 0, pad)
        logits, state = dec(batch.to(device), state)
        at_sot = pad + torch.tensor([len(p) for p in prev], device=device)
        first = logits[torch.arange(b, device=device), at_sot].float()
        prompts = [[tok.eot] * (width - len(r)) + r for r in rows]
    elif done < len(prompts[0]):
        rest = torch.tensor([p[done:] for p in prompts], device=device)
        logits, state = dec(rest, state)
        first = logits[:, 0].float() if done == 0 else first
    no_speech = torch.softmax(first, dim=-1)[:, tok.no_speech]
    width = torch.tensor(prompts).shape[1]
    return _Prompted(state, logits[:, -1].float(), no_speech, langs, width)


def _schedules(b: int, temperatures: Sequence[float] | None, fallback: bool) -> list[list[float]]:
    """The temperatures each row may be decoded at, in order (one: no fallback)."""
    if temperatures is None:
        return [[0.0]] * b
    return [temperature_schedule(t) if fallback else [t] for t in temperatures]


def _decode_with_fallback(
    run: _Sampler,
    prompted: _Prompted,
    schedules: list[list[float]],
    caps: list[int],
    budgets: list[int],
) -> list[Transcript]:
    """Every row at its first temperature; then, attempt by attempt, the rows that need
    it again at their next one, together; a row none of whose attempts passes keeps
    best_attempt; a row whose attempts would pass its budget stops, `over_budget`
    (module docstring). `caps[r]`, `budgets[r]`: row r's tokens per attempt, in all."""
    tok = run.model.tokenizer
    state, step_logits, no_speech = prompted.state, prompted.step_logits, prompted.no_speech
    b = len(schedules)
    spent, over = [0] * b, [False] * b
    limit = [min(caps[r], budgets[r]) for r in range(b)]
    emitted, sums = run(state, step_logits, [s[0] for s in schedules], limit, attempt=0)
    kept = [0] * b  # the last attempt of each row
    out = [
        _transcript(tok, emitted[r], sums[r], float(no_speech[r]), schedules[r][0])
        for r in range(b)
    ]
    tried = [[t] for t in out]
    for r in range(b):
        spent[r] = len(emitted[r])
        over[r] = _cut_by_budget(tok, emitted[r], limit[r], caps[r])
    attempt = 0
    while True:
        attempt += 1
        wanting = [
            r
            for r in range(b)
            if kept[r] == attempt - 1
            and not over[r]
            and attempt < len(schedules[r])
            and needs_fallback(out[r].text, out[r].avg_logprob, out[r].no_speech_prob)
        ]
        for r in wanting:
            over[r] = spent[r] >= budgets[r]  # another attempt, and nothing left to pay it
        again = [r for r in wanting if not over[r]]
        if not again:
            break
        rows = torch.tensor(again, device=step_logits.device)
        temps = [schedules[r][attempt] for r in again]
        limit = [min(caps[r], budgets[r] - spent[r]) for r in again]
        emitted, sums = run(state.select(rows), step_logits[rows], temps, limit, attempt)
        for j, r in enumerate(again):
            kept[r] = attempt
            out[r] = _transcript(tok, emitted[j], sums[j], float(no_speech[r]), temps[j])
            tried[r].append(out[r])
            spent[r] += len(emitted[j])
            over[r] = _cut_by_budget(tok, emitted[j], limit[j], caps[r])
    for r in range(b):
        if len(tried[r]) > 1 and needs_fallback(
            out[r].text, out[r].avg_logprob, out[r].no_speech_prob
        ):
            out[r] = best_attempt(tried[r])
        out[r].spent, out[r].over_budget = spent[r], over[r]
    return out


def _cut_by_budget(tok, emitted: list[int], limit: int, cap: int) -> bool:
    """An attempt the budget stopped (its limit under the row's own cap, and reached)."""
    return limit < cap and len(emitted) >= limit and (not emitted or emitted[-1] != tok.eot)


def _add_word_times(
    model: WhisperModel,
    start: DecoderState,
    out: list[Transcript],
    wanted: list[int],
    langs: list[str | None],
    timestamps: bool,
    durations: Sequence[float],
) -> None:
    """Word times (alignment.py) for the rows in `wanted`, set on their transcripts."""
    tok = model.tokenizer
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
    timed = align_words(model.decoder, tok, model.config.alignment_heads, start, requests)
    for r, found in zip(wanted, timed):
        out[r].words = found


def _transcript(tok, emitted: list[int], logprob_sum: float, no_speech: float, t: float):
    tokens = [x for x in emitted if x != tok.eot]
    return Transcript(
        text=tok.decode(tokens).strip(),
        tokens=tokens,
        avg_logprob=logprob_sum / max(1, len(emitted)),
        no_speech_prob=no_speech,
        temperature=t,
    )


class _Sampler:
    """One decoding attempt over a batch: every step one decoder forward over the live
    rows; a row at temperature 0 takes the argmax, above 0 a sample (Gumbel-max with the
    row's own generator). Returns each row's emitted tokens and logprob sum."""

    def __init__(self, model: WhisperModel, timestamps: bool, suppress):
        self.model, self.timestamps = model, timestamps
        self.suppress = suppress

    def __call__(
        self,
        state: DecoderState,
        step_logits: torch.Tensor,
        temps: list[float],
        caps: list[int],
        attempt: int,
    ) -> tuple[list[list[int]], list[float]]:
        """`caps[r]`: the most tokens row r may emit (a row reaching it stops, as at
        <|endoftext|>; every row its own, so no row's tokens depend on its batch)."""
        model, tok = self.model, self.model.tokenizer
        b = len(temps)
        live = torch.arange(b)  # original row of each live utterance
        emitted: list[list[int]] = [[] for _ in range(b)]
        sums = [0.0] * b
        gens = [
            torch.Generator().manual_seed(SAMPLING_SEED + attempt) if t > 0 else None for t in temps
        ]
        for step in range(max(caps, default=0)):
            masked = step_logits.clone()
            masked[:, self.suppress] = float("-inf")
            if step == 0:
                masked[:, list(model.config.suppress_ids_begin)] = float("-inf")
            if self.timestamps:
                apply_timestamp_rules(masked, [emitted[int(r)] for r in live], tok, step == 0)
            logprobs = torch.log_softmax(masked, dim=-1)
            chosen = self._choose(masked, [int(r) for r in live], temps, gens)  # [B_live]
            chosen_lp = logprobs.gather(1, chosen[:, None])[:, 0]
            for j, row in enumerate(live.tolist()):
                emitted[row].append(int(chosen[j]))
                sums[row] += float(chosen_lp[j])
            room = torch.tensor([len(emitted[r]) < caps[r] for r in live.tolist()])
            keep = (chosen != tok.eot) & room.to(chosen.device)
            if not bool(keep.any()):
                break
            if not bool(keep.all()):
                rows = keep.nonzero()[:, 0]
                state, live, chosen = state.select(rows), live[rows], chosen[rows]
            step_logits, state = model.decoder(chosen[:, None], state)
            step_logits = step_logits[:, -1].float()
        return emitted, sums

    @staticmethod
    def _choose(masked: torch.Tensor, rows: list[int], temps: list[float], gens) -> torch.Tensor:
        chosen = masked.argmax(dim=-1)
        for j, row in enumerate(rows):
            if temps[row] > 0:
                u = torch.rand(masked.shape[1], generator=gens[row]).to(masked.device)
                gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
                chosen[j] = (masked[j] / temps[row] + gumbel).argmax()
        return chosen
