"""Reading a local Hugging Face CTC checkpoint folder, safely, without `transformers`.

A folder as `save_pretrained` writes it:
    config.json               the architecture (Wav2Vec2ForCTC or HubertForCTC)
    model.safetensors         the weights (preferred), or
    pytorch_model.bin         read with torch.load(weights_only=True): no code runs
    vocab.json                token -> CTC output id (blank = the pad token, "|" = space)
    preprocessor_config.json  sampling rate and whether to normalize each utterance

Every number in config.json sizes a tensor we allocate, so each is bounded before
anything is built, and the weights must then match the built modules exactly (strict
load: no missing, unexpected or misshapen tensor). Anything wrong raises
HfCheckpointError naming the file and the field.

Why torchaudio's modules and not the HF module: HRA steps the encoder one layer at a
time with per-utterance heads between layers (Backbone.embed/layer/logits); torchaudio's
Wav2Vec2Model exposes exactly those pieces (feature_extractor, encoder._preprocess,
transformer.layers[i], aux), its parameter names mirror HF's one for one (WavLM's q/k/v
projections are concatenated into one in_proj, as torchaudio's own importer does), and it
keeps `transformers` (a large, fast-moving package) out of the serving image.
Data2VecAudio's positional embedding (a stack of plain convolutions) is the one module
torchaudio lacks: server/models/hf/ctc.py has it (StackedPositionalConv).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from server.models.errors import HfCheckpointError  # re-exported: callers import it here

logger = logging.getLogger(__name__)

SUPPORTED = {  # class -> weight prefix
    "Wav2Vec2ForCTC": "wav2vec2",
    "HubertForCTC": "hubert",
    "WavLMForCTC": "wavlm",
    "Data2VecAudioForCTC": "data2vec_audio",
}
NOT_YET = {
    "Wav2Vec2ConformerForCTC": "its conformer layers (convolution module, rotary or relative "
    "positions) have no torchaudio module to map onto",
}
MAX_PARAMETERS = 2_000_000_000  # well above wav2vec2-xls-r-1b / large (317 M)
MAX_RECEPTIVE_FIELD = 10 * 16_000  # samples one output frame may need (wav2vec2: 400)
MAX_JSON_BYTES = 4 << 20  # config / vocab / preprocessor files are a few KiB in practice
SAMPLE_RATE = 16_000
LAYER_NORM_EPS = 1e-5  # torchaudio's fixed epsilon


@dataclass(frozen=True)
class HfCtcCheckpoint:
    architecture: str  # a key of SUPPORTED
    torchaudio_config: dict[str, Any]  # kwargs of torchaudio.models.wav2vec2_model
    feat_proj_layer_norm: bool  # HuBERT may omit the feature projection's LayerNorm
    vocab: dict[str, int]  # token -> output id, from vocab.json
    hf_vocab_size: int  # rows of lm_head
    pad_id: int  # the CTC blank
    do_normalize: bool  # zero-mean unit-variance per utterance before the conv front end
    pos_conv_layers: int = 0  # Data2VecAudio: stacked positional convs; 0: one weight-normed


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise HfCheckpointError(f"{path}: missing")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise HfCheckpointError(f"{path}: {path.stat().st_size} bytes, over {MAX_JSON_BYTES}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HfCheckpointError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise HfCheckpointError(f"{path}: expected a JSON object")
    return data


def _int(cfg: dict, key: str, lo: int, hi: int, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise HfCheckpointError(f"config.json: {key}={value!r} is not an integer in [{lo}, {hi}]")
    return value


def _flag(cfg: dict, key: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if not isinstance(value, bool):
        raise HfCheckpointError(f"config.json: {key}={value!r} is not true/false")
    return value


def _int_list(cfg: dict, key: str, lo: int, hi: int) -> list[int]:
    value = cfg.get(key)
    if not isinstance(value, list) or not 1 <= len(value) <= 16:
        raise HfCheckpointError(f"config.json: {key} must be a list of 1-16 integers")
    return [_int({key: v}, key, lo, hi) for v in value]


def read_config(folder: Path) -> tuple[str, dict[str, Any], bool, int, int | None, int]:
    """config.json -> architecture, torchaudio kwargs, feat_proj_layer_norm, vocab size,
    pad id, stacked positional conv layers (Data2VecAudio; else 0)."""
    cfg = _read_json(folder / "config.json")
    archs = cfg.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    if arch in NOT_YET:
        raise HfCheckpointError(f"config.json: {arch} is not supported yet: {NOT_YET[arch]}")
    if arch not in SUPPORTED:
        raise HfCheckpointError(
            f"config.json: architectures={archs!r}; supported: {sorted(SUPPORTED)}"
        )
    hidden = _int(cfg, "hidden_size", 8, 8192)
    heads = _int(cfg, "num_attention_heads", 1, 128)
    groups = _int(cfg, "num_conv_pos_embedding_groups", 1, hidden)
    if hidden % heads or hidden % groups:
        raise HfCheckpointError(
            f"config.json: hidden_size={hidden} is not divisible by num_attention_heads={heads}"
            f" and num_conv_pos_embedding_groups={groups}"
        )
    conv_dim = _int_list(cfg, "conv_dim", 1, 4096)
    conv_kernel = _int_list(cfg, "conv_kernel", 1, 1024)
    conv_stride = _int_list(cfg, "conv_stride", 1, 1024)
    if not len(conv_dim) == len(conv_kernel) == len(conv_stride):
        raise HfCheckpointError("config.json: conv_dim, conv_kernel, conv_stride differ in length")
    norm = cfg.get("feat_extract_norm", "group")
    if norm not in ("group", "layer"):
        raise HfCheckpointError(f"config.json: feat_extract_norm={norm!r} (group or layer)")
    for key in ("hidden_act", "feat_extract_activation"):
        if cfg.get(key, "gelu") != "gelu":
            raise HfCheckpointError(f"config.json: {key}={cfg.get(key)!r}; only gelu is mapped")
    if cfg.get("layer_norm_eps", LAYER_NORM_EPS) != LAYER_NORM_EPS:
        raise HfCheckpointError(f"config.json: layer_norm_eps must be {LAYER_NORM_EPS}")
    if _flag(cfg, "add_adapter", False):
        raise HfCheckpointError("config.json: add_adapter=true is not supported")
    vocab_size = _int(cfg, "vocab_size", 2, 100_000)
    pad = cfg.get("pad_token_id")
    ta_config = {
        "extractor_mode": f"{norm}_norm",
        "extractor_conv_layer_config": list(zip(conv_dim, conv_kernel, conv_stride)),
        "extractor_conv_bias": _flag(cfg, "conv_bias", False),
        "encoder_embed_dim": hidden,
        "encoder_projection_dropout": 0.0,  # inference only: dropouts are off
        "encoder_pos_conv_kernel": _int(cfg, "num_conv_pos_embeddings", 2, 1024),
        "encoder_pos_conv_groups": groups,
        "encoder_num_layers": _int(cfg, "num_hidden_layers", 1, 96),
        "encoder_num_heads": heads,
        "encoder_attention_dropout": 0.0,
        "encoder_ff_interm_features": _int(cfg, "intermediate_size", 1, 65_536),
        "encoder_ff_interm_dropout": 0.0,
        "encoder_dropout": 0.0,
        "encoder_layer_norm_first": _flag(cfg, "do_stable_layer_norm", False),
        "encoder_layer_drop": 0.0,
    }
    if arch == "WavLMForCTC":
        ta_config["encoder_num_buckets"] = _int(cfg, "num_buckets", 1, 4096)
        ta_config["encoder_max_distance"] = _int(cfg, "max_bucket_distance", 1, 1_000_000)
    pos_conv_layers = 0
    if arch == "Data2VecAudioForCTC":
        pos_conv_layers = _int(cfg, "num_conv_pos_embeddings", 1, 64)
        ta_config["extractor_mode"] = "layer_norm"  # data2vec's conv blocks always LayerNorm
        ta_config["encoder_pos_conv_kernel"] = _int(cfg, "conv_pos_kernel_size", 1, 1024)
        ta_config["encoder_layer_norm_first"] = False  # post-LN only: HF ignores the flag
    proj_norm = _flag(cfg, "feat_proj_layer_norm", True) if arch == "HubertForCTC" else True
    pad_id = pad if isinstance(pad, int) else None
    return arch, ta_config, proj_norm, vocab_size, pad_id, pos_conv_layers


def read_vocab(folder: Path, vocab_size: int) -> dict[str, int]:
    vocab = _read_json(folder / "vocab.json")
    ids = list(vocab.values())
    if not vocab or any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise HfCheckpointError(f"{folder}/vocab.json: expected a non-empty token -> id object")
    if min(ids) < 0 or max(ids) >= vocab_size or len(set(ids)) != len(ids):
        raise HfCheckpointError(
            f"{folder}/vocab.json: ids must be distinct and in [0, {vocab_size})"
            " (config vocab_size)"
        )
    return {str(k): int(v) for k, v in vocab.items()}


def read_preprocessor(folder: Path) -> bool:
    """preprocessor_config.json -> do_normalize (the rate must be ours: 16 kHz mono)."""
    cfg = _read_json(folder / "preprocessor_config.json")
    rate = cfg.get("sampling_rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE or cfg.get("feature_size", 1) != 1:
        raise HfCheckpointError(
            f"{folder}/preprocessor_config.json: sampling_rate={rate!r}, "
            f"feature_size={cfg.get('feature_size')!r}; only 16000 Hz mono raw audio is supported"
        )
    return _flag(cfg, "do_normalize", True)


def read_checkpoint(folder: str | Path) -> HfCtcCheckpoint:
    """Everything but the weights, validated (cheap: no tensor is allocated)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HfCheckpointError(f"{folder}: not a directory")
    arch, ta_config, proj_norm, vocab_size, pad_id, pos_conv_layers = read_config(folder)
    vocab = read_vocab(folder, vocab_size)
    if pad_id is None:
        pad_id = vocab.get("<pad>")
    if pad_id is None or not 0 <= pad_id < vocab_size:
        raise HfCheckpointError(f"{folder}: no pad token (the CTC blank) in config or vocab.json")
    do_normalize = read_preprocessor(folder)
    return HfCtcCheckpoint(
        arch, ta_config, proj_norm, vocab, vocab_size, pad_id, do_normalize, pos_conv_layers
    )


def estimated_parameters(ckpt: HfCtcCheckpoint) -> int:
    """What config.json would make us allocate (within a few %): conv front end,
    projection, positional conv(s), encoder layers, CTC head."""
    cfg = ckpt.torchaudio_config
    d, n, inner = (
        cfg["encoder_embed_dim"],
        cfg["encoder_num_layers"],
        cfg["encoder_ff_interm_features"],
    )
    total, c_in = 0, 1
    for c_out, kernel, _ in cfg["extractor_conv_layer_config"]:
        total, c_in = total + c_in * c_out * kernel, c_out
    total += c_in * d + d * d // cfg["encoder_pos_conv_groups"] * cfg[
        "encoder_pos_conv_kernel"
    ] * max(1, ckpt.pos_conv_layers)
    total += n * (4 * d * d + 2 * d * inner) + d * ckpt.hf_vocab_size
    return total


def check_sizes(ckpt: HfCtcCheckpoint, state: dict[str, torch.Tensor]) -> None:
    """Refuse a config whose model is absurd, or bigger than the weights read, before a
    single module is built (the weights are bounded by the file; the modules by this)."""
    field, stride = 1, 1
    for _, kernel, step in ckpt.torchaudio_config["extractor_conv_layer_config"]:
        field, stride = field + (kernel - 1) * stride, stride * step
    if field > MAX_RECEPTIVE_FIELD:
        raise HfCheckpointError(
            f"config.json: the conv front end needs {field} samples per frame"
            f" (over {MAX_RECEPTIVE_FIELD})"
        )
    params, held = estimated_parameters(ckpt), sum(t.numel() for t in state.values())
    if params > MAX_PARAMETERS or params > held * 1.1:
        raise HfCheckpointError(
            f"config.json describes ~{params:,} parameters, the weights hold {held:,}"
            f" (at most {MAX_PARAMETERS:,})"
        )


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """model.safetensors, else pytorch_model.bin unpickled with weights_only (no code runs)."""
    folder = Path(folder)
    safetensors, pickled = folder / "model.safetensors", folder / "pytorch_model.bin"
    if safetensors.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(safetensors))
        except (SafetensorError, OSError, ValueError) as exc:
            raise HfCheckpointError(f"{safetensors}: unreadable ({exc})") from exc
    if pickled.is_file():
        try:
            state = torch.load(pickled, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError and whatever a hostile pickle provokes
            raise HfCheckpointError(
                f"{pickled}: refused by torch.load(weights_only=True): {type(exc).__name__}"
            ) from exc
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        ):
            raise HfCheckpointError(f"{pickled}: not a flat name -> tensor state dict")
        return state
    if (folder / "model.safetensors.index.json").is_file():
        raise HfCheckpointError(f"{folder}: sharded checkpoints are not supported yet")
    raise HfCheckpointError(f"{folder}: neither model.safetensors nor pytorch_model.bin")


def to_torchaudio_names(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """HF parameter names -> torchaudio.models.Wav2Vec2Model's (they mirror one for one)."""
    prefix = SUPPORTED[arch] + "."
    renames = [
        (prefix + "feature_extractor.", "feature_extractor."),
        (prefix + "feature_projection.", "encoder.feature_projection."),
        (prefix + "encoder.", "encoder.transformer."),
        ("lm_head.", "aux."),
    ]
    legacy = {  # weight_norm as transformers < 4.40 saved it
        ".weight_g": ".parametrizations.weight.original0",
        ".weight_v": ".parametrizations.weight.original1",
    }
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name == prefix + "masked_spec_embed":  # training-time masking only
            continue
        for old, new in renames:
            if name.startswith(old):
                name = new + name[len(old) :]
                break
        else:
            raise HfCheckpointError(f"unexpected weight {name!r} for {arch}")
        for old, new in legacy.items():
            if name.endswith(old) and "pos_conv_embed" in name:
                name = name[: -len(old)] + new
        out[name] = tensor.float()
    if arch == "WavLMForCTC":
        _fuse_wavlm_qkv(out)
    return out


def _fuse_wavlm_qkv(state: dict[str, torch.Tensor]) -> None:
    """HF WavLM's q/k/v/out projections -> torchaudio's nn.MultiheadAttention names, in place."""
    from torchaudio.models.wav2vec2.utils.import_huggingface import (
        transform_wavlm_encoder_state,
    )

    prefix = "encoder.transformer."
    encoder = {k[len(prefix) :]: state.pop(k) for k in list(state) if k.startswith(prefix)}
    layers = {int(k.split(".")[1]) for k in encoder if k.startswith("layers.")}
    try:
        transform_wavlm_encoder_state(encoder, max(layers, default=-1) + 1)
    except KeyError as exc:
        raise HfCheckpointError(f"WavLM weights: missing {exc}") from exc
    state.update({prefix + k: v for k, v in encoder.items()})
