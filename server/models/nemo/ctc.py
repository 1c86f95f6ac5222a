"""A NeMo character Conformer-CTC / FastConformer-CTC (.nemo) as an HRA backbone, without NeMo.

NeMo's Conformer differs from ours (server/models/ctc/conformer.py) in ways its weights depend on:
Transformer-XL relative positional attention (linear_pos, pos_bias_u / pos_bias_v, rel_shift),
x scaling by sqrt(D), its own 2-D conv subsampling (striding, or FastConformer's depthwise
dw_striding), a post-block LayerNorm, and NeMo's log-mel front end. So this module is a
minimal re-implementation of exactly those pieces, parameter names mirroring NeMo's so the
state dict loads strictly; semantics follow NeMo's eval-mode forward:

    featurize  preemphasis, |STFT|^2 (center, zero pad, the checkpoint's own window), the
               checkpoint's own mel filterbank, log(x + 2^-24), per-feature mean/std over the
               utterance (unbiased std + 1e-5)                             [T_in, n_mels]
    embed      conv subsampling (padding re-zeroed between convs, as NeMo's
               MaskedConvSequential), linear out, x * sqrt(D)               [B, T, D]
    layer      x + FF/2; + RelMHSA; + conv module; + FF/2; LayerNorm
    logits     the decoder's 1x1 conv, log-softmax, folded onto our CharTokenizer symbols
               as for Hugging Face checkpoints (server/models/hf/ctc.py fold_log_probs)
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from server.models.ctc.tokenizer import CharTokenizer
from server.models.hf.ctc import fold_log_probs, fold_matrix
from server.models.nemo.checkpoint import NemoCheckpointError, NemoCtcCheckpoint, read_nemo

logger = logging.getLogger(__name__)

NEG_INF = -10000.0  # NeMo's INF_VAL fill for masked attention scores
STD_EPS = 1e-5


class Featurizer(nn.Module):
    """NeMo's FilterbankFeatures in eval mode, one utterance at a time."""

    def __init__(self, ckpt: NemoCtcCheckpoint) -> None:
        super().__init__()
        self.ckpt = ckpt
        self.register_buffer("window", torch.zeros(ckpt.win_length))
        self.register_buffer("fb", torch.zeros(1, ckpt.n_mels, ckpt.n_fft // 2 + 1))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        c = self.ckpt
        x = waveform.float()[None]
        frames = x.shape[1] // c.hop_length  # NeMo's seq_len (center padding, n_fft//2 each side)
        if c.preemph is not None:
            x = torch.cat((x[:, :1], x[:, 1:] - c.preemph * x[:, :-1]), dim=1)
        spec = torch.stft(
            x,
            n_fft=c.n_fft,
            hop_length=c.hop_length,
            win_length=c.win_length,
            center=True,
            window=self.window.float(),
            return_complex=True,
            pad_mode="constant",
        )
        spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1))
        if c.mag_power != 1.0:
            spec = spec.pow(c.mag_power)
        mel = torch.matmul(self.fb.float(), spec)  # [1, n_mels, frames + 1]
        if c.log_guard == "add":
            mel = torch.log(mel + c.log_guard_value)
        else:
            mel = torch.log(torch.clamp(mel, min=c.log_guard_value))
        mel = mel[0, :, :frames]
        if c.normalize == "per_feature":
            mean = mel.mean(dim=1, keepdim=True)
            std = torch.sqrt(((mel - mean) ** 2).sum(dim=1, keepdim=True) / (frames - 1.0))
            std = std.masked_fill(std.isnan(), 0.0) + STD_EPS
            mel = (mel - mean) / std
        return mel.T.contiguous()  # [frames, n_mels]


class Subsampling(nn.Module):
    """NeMo's ConvSubsampling (striding / dw_striding, non-causal), layer indices mirrored."""

    def __init__(self, ckpt: NemoCtcCheckpoint) -> None:
        super().__init__()
        c, stages = ckpt.subsampling_channels, int(math.log2(ckpt.subsampling_factor))
        layers: list[nn.Module] = [nn.Conv2d(1, c, 3, 2, 1), nn.ReLU()]
        for _ in range(stages - 1):
            if ckpt.subsampling == "striding":
                layers += [nn.Conv2d(c, c, 3, 2, 1), nn.ReLU()]
            else:
                layers += [nn.Conv2d(c, c, 3, 2, 1, groups=c), nn.Conv2d(c, c, 1), nn.ReLU()]
        self.conv = nn.Sequential(*layers)
        freq = ckpt.feat_in
        for _ in range(stages):
            freq = (freq - 1) // 2 + 1
        self.out = nn.Linear(c * freq, ckpt.d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        """x [B, T, F], lengths [B] -> [B, T', D], lengths [B]."""
        x = x[:, None]  # [B, 1, T, F]
        for layer in self.conv:
            x = x * _time_mask(lengths, x.shape[2], x)
            x = layer(x)
            if isinstance(layer, nn.Conv2d) and layer.stride != (1, 1):
                lengths = (lengths + 2 * layer.padding[0] - layer.kernel_size[0]) // 2 + 1
        x = x * _time_mask(lengths, x.shape[2], x)
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f)), lengths


def _time_mask(lengths: torch.Tensor, t: int, like: torch.Tensor) -> torch.Tensor:
    mask = torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]
    return mask[:, None, :, None].to(like.dtype)


class FeedForward(nn.Module):
    def __init__(self, d: int, inner: int, bias: bool) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d, inner, bias=bias)
        self.linear2 = nn.Linear(inner, d, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.silu(self.linear1(x)))


class RelPositionAttention(nn.Module):
    """Transformer-XL attention as NeMo's RelPositionMultiHeadAttention (no SDPA path)."""

    def __init__(self, d: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.h, self.d_k = heads, d // heads
        self.linear_q = nn.Linear(d, d, bias=bias)
        self.linear_k = nn.Linear(d, d, bias=bias)
        self.linear_v = nn.Linear(d, d, bias=bias)
        self.linear_out = nn.Linear(d, d, bias=bias)
        self.linear_pos = nn.Linear(d, d, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.d_k))

    def forward(self, x, pos_emb, mask) -> torch.Tensor:
        """x [B, T, D]; pos_emb [1, 2T-1, D]; mask [B, T, T] True where not attended."""
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.h, self.d_k)
        k = self.linear_k(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(1, -1, self.h, self.d_k).transpose(1, 2)
        ac = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        bd = _rel_shift(torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1)))
        scores = (ac + bd[..., :t]) / math.sqrt(self.d_k)
        mask = mask[:, None]
        attn = torch.softmax(scores.masked_fill(mask, NEG_INF), dim=-1).masked_fill(mask, 0.0)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, self.h * self.d_k)
        return self.linear_out(out)


def _rel_shift(x: torch.Tensor) -> torch.Tensor:
    b, h, q, p = x.shape
    x = F.pad(x, (1, 0)).view(b, h, -1, q)
    return x[:, :, 1:].reshape(b, h, q, p)


def relative_positions(t: int, d: int, device, dtype) -> torch.Tensor:
    """NeMo's RelPositionalEncoding for length t: positions t-1 .. -(t-1) -> [1, 2t-1, d]."""
    positions = torch.arange(t - 1, -t, -1, dtype=torch.float32, device=device)[:, None]
    div = torch.exp(
        torch.arange(0, d, 2, dtype=torch.float32, device=device) * -(math.log(10000.0) / d)
    )
    pe = torch.zeros(positions.shape[0], d, device=device)
    pe[:, 0::2] = torch.sin(positions * div)
    pe[:, 1::2] = torch.cos(positions * div)
    return pe[None].to(dtype)


class ConvModule(nn.Module):
    def __init__(self, d: int, kernel: int, norm: str, bias: bool) -> None:
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(d, 2 * d, 1, bias=bias)
        self.depthwise_conv = nn.Conv1d(
            d, d, kernel, padding=(kernel - 1) // 2, groups=d, bias=bias
        )
        self.norm = norm
        self.batch_norm = nn.BatchNorm1d(d) if norm == "batch_norm" else nn.LayerNorm(d)
        self.pointwise_conv2 = nn.Conv1d(d, d, 1, bias=bias)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        x = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)
        x = self.depthwise_conv(x.masked_fill(pad_mask[:, None, :], 0.0))
        if self.norm == "batch_norm":
            x = self.batch_norm(x)
        else:
            x = self.batch_norm(x.transpose(1, 2)).transpose(1, 2)
        return self.pointwise_conv2(F.silu(x)).transpose(1, 2)


class ConformerLayer(nn.Module):
    def __init__(self, ckpt: NemoCtcCheckpoint) -> None:
        super().__init__()
        d, bias = ckpt.d_model, ckpt.use_bias
        self.norm_feed_forward1 = nn.LayerNorm(d)
        self.feed_forward1 = FeedForward(d, ckpt.ff_dim, bias)
        self.norm_conv = nn.LayerNorm(d)
        self.conv = ConvModule(d, ckpt.conv_kernel, ckpt.conv_norm, bias)
        self.norm_self_att = nn.LayerNorm(d)
        self.self_attn = RelPositionAttention(d, ckpt.n_heads, bias)
        self.norm_feed_forward2 = nn.LayerNorm(d)
        self.feed_forward2 = FeedForward(d, ckpt.ff_dim, bias)
        self.norm_out = nn.LayerNorm(d)

    def forward(self, x, pos_emb, att_mask, pad_mask) -> torch.Tensor:
        x = x + 0.5 * self.feed_forward1(self.norm_feed_forward1(x))
        x = x + self.self_attn(self.norm_self_att(x), pos_emb, att_mask)
        x = x + self.conv(self.norm_conv(x), pad_mask)
        x = x + 0.5 * self.feed_forward2(self.norm_feed_forward2(x))
        return self.norm_out(x)


class Encoder(nn.Module):
    def __init__(self, ckpt: NemoCtcCheckpoint) -> None:
        super().__init__()
        self.pre_encode = Subsampling(ckpt)
        # untie_biases false: NeMo's layers share one pos_bias_u / v pair, saved under every
        # layer's name, so each layer holds its copy here either way.
        self.layers = nn.ModuleList(ConformerLayer(ckpt) for _ in range(ckpt.n_layers))


class Decoder(nn.Module):
    def __init__(self, ckpt: NemoCtcCheckpoint) -> None:
        super().__init__()
        self.decoder_layers = nn.Sequential(nn.Conv1d(ckpt.d_model, len(ckpt.labels) + 1, 1))


class Preprocessor(nn.Module):
    def __init__(self, ckpt: NemoCtcCheckpoint) -> None:
        super().__init__()
        self.featurizer = Featurizer(ckpt)


class NemoCtcBackbone(nn.Module):
    """server.models.backbone.Backbone for a NeMo character Conformer-CTC / FastConformer-CTC."""

    def __init__(self, ckpt: NemoCtcCheckpoint) -> None:
        super().__init__()
        self.ckpt = ckpt
        self.preprocessor = Preprocessor(ckpt)
        self.encoder = Encoder(ckpt)
        self.decoder = Decoder(ckpt)
        self.hidden_dim = ckpt.d_model
        self.num_layers = ckpt.n_layers
        self.vocab_size = CharTokenizer().vocab_size
        self.frame_seconds = ckpt.hop_length * ckpt.subsampling_factor / 16_000
        self.min_samples = 2 * ckpt.hop_length  # two frames: a per-feature std exists
        blank = len(ckpt.labels)
        vocab = {label: i for i, label in enumerate(ckpt.labels)}
        self.register_buffer("fold", fold_matrix(vocab, blank + 1, blank))  # in the fingerprint

    @classmethod
    def from_file(cls, path: str | Path) -> NemoCtcBackbone:
        """Build from model_config.yaml, then load model_weights.ckpt strictly."""
        ckpt, state = read_nemo(path)
        backbone = cls(ckpt)
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        expected = {
            k: v
            for k, v in backbone.state_dict().items()
            if not k.endswith("num_batches_tracked") and k != "fold"  # fold: from the labels
        }
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or wrong:
            raise NemoCheckpointError(
                f"{path}: weights do not match model_config.yaml: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
            )
        backbone.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        logger.info(
            "loaded NeMo %s-CTC from %s: D=%d, L=%d, %d labels",
            "FastConformer" if ckpt.subsampling == "dw_striding" else "Conformer",
            path,
            ckpt.d_model,
            ckpt.n_layers,
            len(ckpt.labels),
        )
        return backbone.eval()

    @classmethod
    def from_config(cls, config: dict) -> NemoCtcBackbone:
        fields = dict(config["checkpoint"])
        fields["labels"] = tuple(fields["labels"])
        return cls(NemoCtcCheckpoint(**fields))

    def config_dict(self) -> dict:
        return {"type": "nemo_ctc", "checkpoint": asdict(self.ckpt)}

    def featurize(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.preprocessor.featurizer(waveform)

    def embed(self, inputs: torch.Tensor, lengths: torch.Tensor):
        x, lengths = self.encoder.pre_encode(inputs, lengths)
        if self.ckpt.xscaling:
            x = x * math.sqrt(self.ckpt.d_model)
        return x, lengths

    def layer(self, index: int, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        pos_emb = relative_positions(t, self.hidden_dim, x.device, x.dtype)
        att_mask = pad_mask[:, None, :] | pad_mask[:, :, None]  # [B, T, T]
        return self.encoder.layers[index](x, pos_emb, att_mask, pad_mask)

    def nemo_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Final hidden [B, T, D] -> NeMo's own CTC log-probabilities [B, T, V+1]."""
        z = self.decoder.decoder_layers(x.transpose(1, 2)).transpose(1, 2)
        return z.log_softmax(-1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return fold_log_probs(self.nemo_log_probs(x), self.fold)
