"""Reading a NeMo `.nemo` archive of a character Conformer-CTC / FastConformer-CTC, without NeMo.

A `.nemo` file, as `EncDecCTCModel.save_to` writes it, is a tar (plain or gzip) of:
    model_config.yaml    the model's config (read with yaml.safe_load: plain data only)
    model_weights.ckpt   a torch state dict (read with torch.load(weights_only=True): no code
                         runs), the preprocessor's window and mel filterbank included
Nothing is extracted to disk: members are read in memory, by exact name, each bounded in
size; any other member (a tokenizer, artifacts) is ignored.

What is supported (anything else raises NemoCheckpointError naming the field):
    preprocessor  AudioToMelSpectrogramPreprocessor, 16 kHz, log mel, per_feature or no
                  normalization, frame_splicing 1, center-padded STFT (exact_pad false)
    encoder       ConformerEncoder, self_attention_model rel_pos, full context
                  (att_context_size [-1, -1]), subsampling striding (Conformer) or
                  dw_striding (FastConformer), non-causal, batch_norm or layer_norm conv
                  module, no feat_out projection, no reduction layer
    decoder       ConvASRDecoder over a character vocabulary (`labels`); models with a
                  sub-word `tokenizer` (BPE / SentencePiece) are refused: their tokens do
                  not fold onto our characters
"""

from __future__ import annotations

import io
import logging
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from server.models.errors import NemoCheckpointError  # re-exported: callers import it here

logger = logging.getLogger(__name__)

CONFIG_MEMBER = "model_config.yaml"
WEIGHTS_MEMBER = "model_weights.ckpt"
MAX_CONFIG_BYTES = 4 << 20
MAX_WEIGHTS_BYTES = 8 << 30  # Conformer-CTC XL (600 M parameters) is ~2.4 GB
MAX_MEMBERS = 10_000
SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class NemoCtcCheckpoint:
    labels: tuple[str, ...]  # CTC outputs 0..V-1; V is the blank
    # preprocessor
    n_mels: int
    n_fft: int
    win_length: int
    hop_length: int
    preemph: float | None
    normalize: str | None  # "per_feature" or None
    log_guard: str  # "add" or "clamp"
    log_guard_value: float
    mag_power: float
    # encoder
    feat_in: int
    d_model: int
    n_layers: int
    n_heads: int
    ff_dim: int
    subsampling: str  # striding or dw_striding
    subsampling_factor: int
    subsampling_channels: int
    xscaling: bool
    untie_biases: bool
    conv_kernel: int
    conv_norm: str  # batch_norm or layer_norm
    use_bias: bool


def _bounded_read(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if not member.isfile():
        raise NemoCheckpointError(f"{member.name}: not a regular file")
    if member.size > limit:
        raise NemoCheckpointError(f"{member.name}: {member.size} bytes, over {limit}")
    handle = tar.extractfile(member)
    data = handle.read(limit + 1) if handle else b""
    if len(data) != member.size:
        raise NemoCheckpointError(f"{member.name}: truncated")
    return data


def read_archive(path: str | Path) -> tuple[dict, bytes]:
    """The config (plain data) and the raw weights bytes of a .nemo file."""
    path = Path(path)
    if not path.is_file():
        raise NemoCheckpointError(f"{path}: not a file")
    wanted: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for count, member in enumerate(tar):
                if count >= MAX_MEMBERS:
                    raise NemoCheckpointError(f"{path}: more than {MAX_MEMBERS} members")
                name = member.name.removeprefix("./")
                if name in (CONFIG_MEMBER, WEIGHTS_MEMBER):
                    wanted[name] = member
            missing = {CONFIG_MEMBER, WEIGHTS_MEMBER} - set(wanted)
            if missing:
                raise NemoCheckpointError(f"{path}: no {sorted(missing)} in the archive")
            config_bytes = _bounded_read(tar, wanted[CONFIG_MEMBER], MAX_CONFIG_BYTES)
            weights = _bounded_read(tar, wanted[WEIGHTS_MEMBER], MAX_WEIGHTS_BYTES)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise NemoCheckpointError(f"{path}: not a readable .nemo tar ({exc})") from exc
    try:
        config = yaml.safe_load(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise NemoCheckpointError(f"{CONFIG_MEMBER}: not YAML ({exc})") from exc
    if not isinstance(config, dict):
        raise NemoCheckpointError(f"{CONFIG_MEMBER}: expected a mapping")
    return config, weights


def read_state(weights: bytes) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError and whatever a hostile pickle provokes
        raise NemoCheckpointError(
            f"{WEIGHTS_MEMBER}: refused by torch.load(weights_only=True): {type(exc).__name__}"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise NemoCheckpointError(f"{WEIGHTS_MEMBER}: not a flat name -> tensor state dict")
    return state


def _section(cfg: dict, key: str, target: str) -> dict:
    section = cfg.get(key)
    if not isinstance(section, dict):
        raise NemoCheckpointError(f"{CONFIG_MEMBER}: no {key} section")
    if not str(section.get("_target_", "")).endswith(target):
        raise NemoCheckpointError(
            f"{CONFIG_MEMBER}: {key}._target_={section.get('_target_')!r}; supported: {target}"
        )
    return section


def _int(cfg: dict, key: str, lo: int, hi: int, default: Any = None, where: str = "") -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise NemoCheckpointError(f"{where}{key}={value!r} is not an integer in [{lo}, {hi}]")
    return value


def _num(cfg: dict, key: str, lo: float, hi: float, default: Any = None, where: str = "") -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise NemoCheckpointError(f"{where}{key}={value!r} is not a number in [{lo}, {hi}]")
    return float(value)


def _require(cfg: dict, key: str, allowed: tuple, default: Any, where: str) -> Any:
    value = cfg.get(key, default)
    if value not in allowed:
        raise NemoCheckpointError(f"{where}{key}={value!r}; supported: {list(allowed)}")
    return value


def parse_config(cfg: dict) -> NemoCtcCheckpoint:
    """model_config.yaml -> the architecture, every field bounded or refused."""
    if "tokenizer" in cfg and cfg["tokenizer"]:
        raise NemoCheckpointError(
            f"{CONFIG_MEMBER}: a sub-word tokenizer model (BPE / SentencePiece) is not supported"
            " yet: its tokens do not fold onto our characters; use a character (labels) model"
        )
    pre = _section(cfg, "preprocessor", "AudioToMelSpectrogramPreprocessor")
    enc = _section(cfg, "encoder", "ConformerEncoder")
    dec = _section(cfg, "decoder", "ConvASRDecoder")
    w = "preprocessor."
    rate = _int(pre, "sample_rate", 1, 10**6, cfg.get("sample_rate", SAMPLE_RATE), w)
    if rate != SAMPLE_RATE:
        raise NemoCheckpointError(f"{w}sample_rate={rate}; only 16000 Hz is supported")
    win = pre.get("n_window_size") or round(_num(pre, "window_size", 1e-3, 0.5, 0.02, w) * rate)
    hop = pre.get("n_window_stride") or round(_num(pre, "window_stride", 1e-3, 0.5, 0.01, w) * rate)
    win = _int({"n_window_size": win}, "n_window_size", 16, 8000, where=w)
    hop = _int({"n_window_stride": hop}, "n_window_stride", 16, 8000, where=w)
    n_fft = pre.get("n_fft") or 2 ** math.ceil(math.log2(win))
    n_fft = _int({"n_fft": n_fft}, "n_fft", win, 16384, where=w)
    _require(pre, "log", (True,), True, w)
    _require(pre, "frame_splicing", (1,), 1, w)
    _require(pre, "exact_pad", (False,), False, w)
    _require(pre, "stft_exact_pad", (False,), False, w)
    _require(pre, "stft_conv", (False,), False, w)
    normalize = _require(pre, "normalize", ("per_feature", "NA", None), "per_feature", w)
    guard = _require(pre, "log_zero_guard_type", ("add", "clamp"), "add", w)
    preemph = pre.get("preemph", 0.97)
    if preemph is not None:
        preemph = _num(pre, "preemph", 0.0, 1.0, 0.97, w)
    e = "encoder."
    d_model = _int(enc, "d_model", 8, 8192, where=e)
    heads = _int(enc, "n_heads", 1, 128, 4, e)
    if d_model % heads:
        raise NemoCheckpointError(f"{e}d_model={d_model} is not divisible by n_heads={heads}")
    _require(enc, "self_attention_model", ("rel_pos",), "rel_pos", e)
    if list(enc.get("att_context_size") or [-1, -1]) != [-1, -1]:
        raise NemoCheckpointError(f"{e}att_context_size must be [-1, -1] (full context)")
    _require(enc, "att_context_style", ("regular",), "regular", e)
    _require(enc, "feat_out", (-1,), -1, e)
    _require(enc, "reduction", (None,), None, e)
    _require(enc, "causal_downsampling", (False,), False, e)
    _require(enc, "conv_context_size", (None,), None, e)
    _require(enc, "conv_norm_type", ("batch_norm", "layer_norm"), "batch_norm", e)
    _require(enc, "stochastic_depth_drop_prob", (0.0, 0), 0.0, e)
    subsampling = _require(enc, "subsampling", ("striding", "dw_striding"), "striding", e)
    factor = _int(enc, "subsampling_factor", 2, 64, 4, e)
    if factor & (factor - 1):
        raise NemoCheckpointError(f"{e}subsampling_factor={factor} is not a power of 2")
    channels = enc.get("subsampling_conv_channels", -1)
    channels = (
        d_model if channels == -1 else _int(enc, "subsampling_conv_channels", 1, 4096, where=e)
    )
    kernel = _int(enc, "conv_kernel_size", 1, 1023, 31, e)
    if kernel % 2 == 0:
        raise NemoCheckpointError(f"{e}conv_kernel_size={kernel} must be odd")
    labels = dec.get("vocabulary") or cfg.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise NemoCheckpointError(f"{CONFIG_MEMBER}: decoder.vocabulary must be a list of strings")
    num_classes = _int(dec, "num_classes", 1, 100_000, where="decoder.")
    if num_classes != len(labels) or len(labels) > 100_000:
        raise NemoCheckpointError(
            f"decoder.num_classes={num_classes} != {len(labels)} vocabulary entries"
        )
    feat_in = _int(enc, "feat_in", 1, 1024, where=e)
    n_mels = _int(pre, "features", 1, 1024, 64, w)
    if feat_in != n_mels:
        raise NemoCheckpointError(f"{e}feat_in={feat_in} != preprocessor.features={n_mels}")
    return NemoCtcCheckpoint(
        labels=tuple(labels),
        n_mels=n_mels,
        n_fft=n_fft,
        win_length=win,
        hop_length=hop,
        preemph=preemph,
        normalize="per_feature" if normalize == "per_feature" else None,
        log_guard=guard,
        log_guard_value=_num(pre, "log_zero_guard_value", 0.0, 1.0, 2**-24, w),
        mag_power=_num(pre, "mag_power", 0.5, 4.0, 2.0, w),
        feat_in=feat_in,
        d_model=d_model,
        n_layers=_int(enc, "n_layers", 1, 128, where=e),
        n_heads=heads,
        ff_dim=d_model * _int(enc, "ff_expansion_factor", 1, 16, 4, e),
        subsampling=subsampling,
        subsampling_factor=factor,
        subsampling_channels=channels,
        xscaling=bool(_require(enc, "xscaling", (True, False), True, e)),
        untie_biases=bool(_require(enc, "untie_biases", (True, False), True, e)),
        conv_kernel=kernel,
        conv_norm=enc.get("conv_norm_type", "batch_norm"),
        use_bias=bool(_require(enc, "use_bias", (True, False), True, e)),
    )


def estimated_parameters(ckpt: NemoCtcCheckpoint) -> int:
    """What the config would make us allocate, within a few %."""
    d, c = ckpt.d_model, ckpt.subsampling_channels
    stages = int(math.log2(ckpt.subsampling_factor))
    freq = ckpt.feat_in
    for _ in range(stages):
        freq = (freq - 1) // 2 + 1
    front = 9 * c + (stages - 1) * (9 * c * c if ckpt.subsampling == "striding" else 10 * c + c * c)
    per_layer = 2 * 2 * d * ckpt.ff_dim + 5 * d * d + 3 * d * d + ckpt.conv_kernel * d
    return front + c * freq * d + ckpt.n_layers * per_layer + d * (len(ckpt.labels) + 1)


def read_nemo(path: str | Path) -> tuple[NemoCtcCheckpoint, dict[str, torch.Tensor]]:
    """The validated architecture and the state dict; the config is bounded against the
    weights (a config far larger than its weights is refused before anything is built)."""
    config, weights = read_archive(path)
    ckpt = parse_config(config)
    state = read_state(weights)
    params = estimated_parameters(ckpt)
    held = sum(t.numel() for t in state.values())
    if params > held * 1.1:
        raise NemoCheckpointError(
            f"{CONFIG_MEMBER} describes ~{params:,} parameters, the weights hold {held:,}"
        )
    return ckpt, state
