"""Synthetic English sentences in the synthetic domains, for Whisper's adaptation tasks.

The CTC default's domains speak digit strings (server/data/synthetic.py); Whisper
decodes open English, so its synthetic tasks speak whole sentences: each text is
drawn from a small grammar (templates x word lists, a few thousand distinct
sentences) by a seed derived from (domain, split, index), then spoken by the
domain's espeak-ng voice, rate and pitch and passed through the domain's effect
(telephone band, noise, reverberation, ...), exactly as the digit corpora are.
Task ids are the same `synth-<domain>`; the manifests live in their own folder.
"""

from __future__ import annotations

import logging
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf
import torch
from tqdm import tqdm

from server.data.manifest import Utterance, write_manifest
from server.data.synthetic import DOMAINS, EFFECTS, speak
from server.models.ctc.features import SAMPLE_RATE

logger = logging.getLogger(__name__)

SPLIT_SIZES = {"train": 120, "test": 40}

PEOPLE = (
    "my brother",
    "the teacher",
    "our neighbor",
    "the doctor",
    "a young girl",
    "the farmer",
    "my mother",
    "the old man",
    "her friend",
    "the driver",
    "the captain",
    "his sister",
)
THINGS = (
    "the red book",
    "a cup of tea",
    "the old bicycle",
    "a warm coat",
    "the small box",
    "the green apple",
    "a long letter",
    "the kitchen table",
    "a new phone",
    "the heavy bag",
    "the blue car",
    "a loaf of bread",
)
PLACES = (
    "the market",
    "the station",
    "the river",
    "the garden",
    "the library",
    "the hospital",
    "the beach",
    "the village",
    "the office",
    "the museum",
    "the park",
    "the school",
)
TIMES = (
    "this morning",
    "last night",
    "on Monday",
    "after lunch",
    "every summer",
    "before dinner",
    "at noon",
    "next week",
    "in the evening",
    "yesterday",
)
VERBS_PAST = (
    "found",
    "carried",
    "painted",
    "sold",
    "washed",
    "opened",
    "dropped",
    "bought",
    "cleaned",
    "borrowed",
)
VERBS_MOTION = ("walked to", "drove to", "ran to", "went back to", "hurried to", "looked for")
ADJECTIVES = ("cold", "quiet", "bright", "crowded", "empty", "beautiful", "noisy", "dark", "warm")
TEMPLATES = (
    "{P} {V} {T} {W}.",
    "{P} {M} {L} {W}.",
    "The weather at {L} was {A} {W}.",
    "Please bring {T} to {L}.",
    "Did {P} leave {T} at {L}?",
    "We saw {P} near {L} {W}.",
    "{P} said that {L} was {A}.",
    "Can you put {T} next to {T2}?",
    "I think {P} {V} {T}.",
    "Why was {L} so {A} {W}?",
)


def _pick(g: torch.Generator, options: tuple[str, ...]) -> str:
    return options[int(torch.randint(len(options), (), generator=g))]


def sentence(g: torch.Generator) -> str:
    """One sentence of the grammar, capitalised and punctuated as Whisper writes it."""
    template = _pick(g, TEMPLATES)
    text = template.format(
        P=_pick(g, PEOPLE),
        T=_pick(g, THINGS),
        T2=_pick(g, THINGS),
        L=_pick(g, PLACES),
        W=_pick(g, TIMES),
        V=_pick(g, VERBS_PAST),
        M=_pick(g, VERBS_MOTION),
        A=_pick(g, ADJECTIVES),
    )
    return text[0].upper() + text[1:]


def synthesize_sentence(domain: str, split: str, index: int) -> tuple[torch.Tensor, str]:
    """One sentence utterance of `domain`, fully determined by its arguments."""
    spec = DOMAINS[domain]
    g = torch.Generator().manual_seed(zlib.crc32(f"sentences/{domain}/{split}/{index}".encode()))
    text = sentence(g)
    voice = _pick(g, spec.voices)
    speed = int(torch.randint(spec.speed[0], spec.speed[1] + 1, (), generator=g))
    pitch = int(torch.randint(spec.pitch[0], spec.pitch[1] + 1, (), generator=g))
    return EFFECTS[spec.effect](speak(text, voice, speed, pitch), g), text


def generate_sentences(out_dir: Path, domain: str, split: str, count: int, workers: int = 2):
    """Write `count` sentence utterances of `domain` and their manifest; returns its path."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian package espeak-ng)")
    folder = out_dir / domain / split

    def one(index: int) -> Utterance:
        wav, text = synthesize_sentence(domain, split, index)
        path = folder / f"{index:05d}.wav"
        sf.write(str(path), (wav / max(1.0, float(wav.abs().max()))).numpy(), SAMPLE_RATE)
        return Utterance(f"{split}/{path.name}", text, f"synth-{domain}")

    folder.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            rows = list(tqdm(pool.map(one, range(count)), total=count, desc=f"{domain}/{split}"))
    finally:
        torch.set_num_threads(threads)
    manifest = out_dir / domain / f"{split}.jsonl"
    write_manifest(manifest, rows)
    logger.info("sentences %s/%s: %d utterances", domain, split, count)
    return manifest


def ensure_sentences(out_dir: Path, domains: tuple[str, ...], sizes: dict[str, int]) -> None:
    """Each domain's train and test manifests, generated once (deterministic) if absent."""
    for domain in domains:
        for split, count in sizes.items():
            manifest = out_dir / domain / f"{split}.jsonl"
            if manifest.exists() and len(manifest.read_text().splitlines()) == count:
                continue
            generate_sentences(out_dir, domain, split, count)
