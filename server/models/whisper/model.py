"""One Whisper model: encoder, decoder, tokenizer and the decoding config, loaded once."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from server.config import Settings
from server.models.whisper.decoder import WhisperDecoder
from server.models.whisper.encoder import WhisperEncoder, Window
from server.models.whisper.tokenizer import MULTILINGUAL_VOCAB, WhisperTokenizer
from server.models.whisper.weights import (
    DEFAULT_CACHE_DIR,
    TINY_EN_DIR,
    WeightsManifest,
    load_tensors,
    locate,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WhisperConfig:
    suppress_ids: tuple[int, ...]  # never emitted (non-speech symbols)
    suppress_ids_begin: tuple[int, ...]  # not as the first token (blank, end of text)
    alignment_heads: tuple[tuple[int, int], ...] = ()  # (decoder layer, head): word times

    @classmethod
    def load(cls, path: Path) -> WhisperConfig:
        raw = json.loads(path.read_text())
        heads = tuple((int(layer), int(head)) for layer, head in raw.get("alignment_heads", []))
        return cls(tuple(raw["suppress_ids"]), tuple(raw["suppress_ids_begin"]), heads)


class WhisperModel(nn.Module):
    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        tokenizer: WhisperTokenizer,
        config: WhisperConfig,
        window: Window = "pad",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        enc_heads = int(tensors["encoder/num_heads"].reshape(-1)[0])
        dec_heads = int(tensors["decoder/num_heads"].reshape(-1)[0])
        self.encoder = WhisperEncoder(tensors, enc_heads, window, dtype)
        self.decoder = WhisperDecoder(tensors, dec_heads, dtype)
        self.tokenizer = tokenizer
        self.config = config

    @property
    def window(self) -> Window:
        return self.encoder.window

    @window.setter
    def window(self, value: Window) -> None:
        self.encoder.window = value


def load_whisper_from_settings(settings: Settings, model_dir: Path = TINY_EN_DIR) -> WhisperModel:
    """The model as HRA_WHISPER__* configure it (window, margin, cache folder).

    A manifest naming a `window` (and `cut_margin_s`) is a model directory whose
    controller and heads were trained in that window (hra build-whisper): it serves
    in it unless HRA_WHISPER__WINDOW / __CUT_MARGIN_S are set explicitly."""
    knobs = settings.whisper
    cache_dir = knobs.cache_dir or settings.work_dir / "whisper"
    window, margin = knobs.window, knobs.cut_margin_s
    trained = json.loads((Path(model_dir) / "manifest.json").read_text())
    if "window" in trained and "window" not in knobs.model_fields_set:
        window = trained["window"]
    if "cut_margin_s" in trained and "cut_margin_s" not in knobs.model_fields_set:
        margin = float(trained["cut_margin_s"])
    if "window" in trained and (window, margin) != (trained["window"], trained.get("cut_margin_s")):
        logger.warning(
            "%s was trained in the %r window (margin %s s); serving it in %r (%s s)",
            model_dir,
            trained["window"],
            trained.get("cut_margin_s"),
            window,
            margin,
        )
    model = load_whisper(model_dir, window, cache_dir)
    model.encoder.cut_margin_frames = round(margin / 0.01)  # 10 ms frames
    return model


def load_whisper(
    model_dir: Path = TINY_EN_DIR,
    window: Window = "pad",
    cache_dir: Path = DEFAULT_CACHE_DIR,
    dtype: torch.dtype = torch.float32,
) -> WhisperModel:
    """The model a directory's manifest pins: hashes checked, conversion cached."""
    files = locate(WeightsManifest.load(model_dir))
    tensors = load_tensors(files, cache_dir)
    vocab = tensors["decoder/embeddings/weight"].shape[0]
    tokenizer = WhisperTokenizer(files.path("tokenizer.json"), vocab >= MULTILINGUAL_VOCAB)
    model = WhisperModel(
        tensors, tokenizer, WhisperConfig.load(files.path("config.json")), window, dtype
    )
    logger.info("Loaded %s (%s window) from %s", files.manifest.model, window, files.root)
    return model.eval()
