"""Synthetic multi-domain speech: espeak-ng speaks digit strings, effects make domains.

`base` is what the backbone is pretrained on: several clean voices with mild
augmentation. Every other domain is a shift the base model handles badly
(an unseen voice plus band limiting, noise, reverberation, rate, whisper,
foreign accent, child-like pitch and formants) and is one adaptation task,
`synth-<domain>`.
Generation is deterministic: each utterance's text, voice and effects come
from a seed derived from (domain, split, index).
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF
from tqdm import tqdm

from server.audio.resample import SAMPLE_RATE, resample
from server.data.fsdd import DIGIT_WORDS
from server.data.manifest import Utterance, write_manifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Domain:
    voices: tuple[str, ...]
    speed: tuple[int, int]  # words per minute, inclusive range
    pitch: tuple[int, int]  # espeak pitch 0-99
    effect: str = "clean"  # key of EFFECTS


DOMAINS: dict[str, Domain] = {
    # Voices, rates and pitches the adaptation domains use are kept out of base.
    "base": Domain(
        (
            "en-us+m1",
            "en-us+m3",
            "en-us+m5",
            "en-us+f1",
            "en-us+f2",
            "en-us+f3",
            "en-gb+m1",
            "en-gb+m3",
            "en-gb+f1",
            "en-gb+f4",
            "en-gb-x-rp+m5",
            "en-gb-x-rp+f2",
        ),
        (130, 200),
        (25, 75),
        "mild",
    ),
    "telephone": Domain(("en-us+m4",), (150, 180), (40, 60), "telephone"),
    "noisy": Domain(("en-gb+m7",), (150, 180), (40, 60), "noisy"),
    "reverb": Domain(("en-us+m6",), (150, 180), (40, 60), "reverb"),
    "fast": Domain(("en-us+m2",), (225, 255), (40, 60), "clean"),
    "whisper": Domain(("en-us+whisper",), (150, 180), (40, 60), "clean"),
    "accent-de": Domain(("de",), (150, 180), (40, 60), "clean"),
    # spoken slowly, then shifted up 25-35%: child-like formants at an ordinary rate
    "child": Domain(("en-us+f5",), (130, 155), (95, 99), "child"),
}
ADAPTATION_DOMAINS = tuple(d for d in DOMAINS if d != "base")
SPLIT_SIZES = {"base": {"train": 4000, "test": 200}, "default": {"train": 300, "test": 100}}


def _mild(wav: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    gain = 10 ** (_uniform(g, -6, 6) / 20)
    return add_noise(wav * gain, snr_db=_uniform(g, 25, 40), g=g)


def add_noise(wav: torch.Tensor, snr_db: float, g: torch.Generator, pink: bool = False):
    noise = torch.randn(wav.shape, generator=g)
    if pink:  # 1/f power: scale the spectrum by 1/sqrt(f)
        spec = torch.fft.rfft(noise)
        freqs = torch.arange(spec.shape[0]).clamp_min(1).float()
        noise = torch.fft.irfft(spec / freqs.sqrt(), n=wav.shape[0])
    signal_power = wav.pow(2).mean().clamp_min(1e-10)
    noise = noise * (signal_power / noise.pow(2).mean() / 10 ** (snr_db / 10)).sqrt()
    return wav + noise


def _telephone(wav: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    narrow = AF.resample(wav, SAMPLE_RATE, 8000)
    narrow = AF.highpass_biquad(narrow, 8000, 300.0)
    narrow = AF.lowpass_biquad(narrow, 8000, 3400.0)
    narrow = narrow / narrow.abs().max().clamp_min(1e-6) * 0.8
    narrow = AF.mu_law_decoding(AF.mu_law_encoding(narrow, 256), 256)
    narrow = add_noise(narrow, snr_db=_uniform(g, 15, 25), g=g)
    return AF.resample(narrow, 8000, SAMPLE_RATE)


def _noisy(wav: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return add_noise(wav, snr_db=_uniform(g, -3, 3), g=g)


def _reverb(wav: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    rt60 = _uniform(g, 0.7, 1.2)
    n = int(rt60 * SAMPLE_RATE)
    t = torch.arange(n) / SAMPLE_RATE
    rir = torch.randn(n, generator=g) * torch.exp(-6.9 * t / rt60)  # -60 dB at rt60
    rir[0] = 1.0
    wet = AF.fftconvolve(wav, rir)[: wav.shape[0] + n // 2]
    return wet / wet.abs().max().clamp_min(1e-6) * 0.8


def _child(wav: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A shorter vocal tract: pitch and every formant up 25-35%, played faster by as much."""
    factor = _uniform(g, 1.25, 1.35)
    return AF.resample(wav, round(SAMPLE_RATE * factor / 100) * 100, SAMPLE_RATE)


EFFECTS = {
    "clean": lambda wav, g: wav,
    "child": _child,
    "mild": _mild,
    "telephone": _telephone,
    "noisy": _noisy,
    "reverb": _reverb,
}


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """Inclusive of both ends."""
    return int(torch.randint(low, high + 1, (), generator=g))


def digit_text(g: torch.Generator, max_words: int = 5) -> str:
    n = _randint(g, 1, max_words)
    return " ".join(DIGIT_WORDS[_randint(g, 0, 9)] for _ in range(n))


def speak(text: str, voice: str, speed: int, pitch: int) -> torch.Tensor:
    """espeak-ng -> mono float waveform [N] at 16 kHz."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", tmp.name, text],
            check=True,
            capture_output=True,
        )
        data, rate = sf.read(tmp.name, dtype="float32")
    return resample(torch.from_numpy(data), rate)


def synthesize(domain: str, split: str, index: int) -> tuple[torch.Tensor, str]:
    """One utterance of `domain`, fully determined by its arguments."""
    spec = DOMAINS[domain]
    seed = zlib.crc32(f"{domain}/{split}/{index}".encode())
    g = torch.Generator().manual_seed(seed)
    text = digit_text(g)
    voice = spec.voices[_randint(g, 0, len(spec.voices) - 1)]
    wav = speak(text, voice, _randint(g, *spec.speed), _randint(g, *spec.pitch))
    return EFFECTS[spec.effect](wav, g), text


def generate_domain(out_dir: Path, domain: str, split: str, count: int, workers: int = 4) -> Path:
    """Write `count` utterances and their manifest; returns the manifest path."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian package espeak-ng)")
    folder = out_dir / domain / split
    task = "base" if domain == "base" else f"synth-{domain}"

    def one(index: int) -> Utterance:
        wav, text = synthesize(domain, split, index)
        path = folder / f"{index:05d}.wav"
        sf.write(str(path), (wav / max(1.0, float(wav.abs().max()))).numpy(), SAMPLE_RATE)
        return Utterance(f"{split}/{path.name}", text, task)

    folder.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # parallelism comes from the worker threads here
    try:
        with ThreadPoolExecutor(workers) as pool:
            rows = list(
                tqdm(
                    pool.map(one, range(count)), total=count, desc=f"{domain}/{split}", leave=False
                )
            )
    finally:
        torch.set_num_threads(threads)
    manifest = out_dir / domain / f"{split}.jsonl"
    write_manifest(manifest, rows)
    seconds = sum(sf.info(str(out_dir / domain / r.audio)).duration for r in rows)
    logger.info("%s/%s: %d utterances, %.1f min of audio", domain, split, count, seconds / 60)
    return manifest


def split_size(domain: str, split: str) -> int:
    return SPLIT_SIZES.get(domain, SPLIT_SIZES["default"])[split]


def generate_all(out_dir: Path, domains: tuple[str, ...] = tuple(DOMAINS), scale: float = 1.0):
    """Every domain's train and test split; `scale` shrinks them for quick runs."""
    for domain in domains:
        for split in ("train", "test"):
            count = max(1, math.ceil(split_size(domain, split) * scale))
            generate_domain(out_dir, domain, split, count)
