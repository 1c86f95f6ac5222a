"""A Hugging Face wav2vec2 / HuBERT / WavLM / data2vec-audio CTC checkpoint as an HRA backbone.

The encoder is torchaudio's Wav2Vec2Model built from config.json with the checkpoint's
weights (server/models/hf/checkpoint.py says why torchaudio and how it is read); embed,
layer and min_samples are Wav2Vec2Backbone's. What differs:
    featurize   preprocessor_config's do_normalize: (x - mean) / sqrt(var + 1e-7) per
                utterance, as Wav2Vec2FeatureExtractor does
    hf_logits   the checkpoint's own CTC output [B, T, V_hf] (equals the HF forward)
    logits      the same distribution folded onto our CharTokenizer symbols [B, T, 29]:
                log sum of the probabilities of every HF token that spells the symbol
                ("A" and "a" -> "a", "|" -> " ", pad -> blank); tokens we cannot spell
                (<s>, </s>, <unk>, digits, accents) fold into blank, as
                CharTokenizer.normalize drops them. So decoding, vocabulary decoding,
                head training and the head store work unchanged on this backbone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torchaudio
from torch import nn

from server.models.backbone import padding_mask
from server.models.ctc.tokenizer import BLANK, CharTokenizer
from server.models.hf.checkpoint import (
    HfCheckpointError,
    HfCtcCheckpoint,
    check_sizes,
    read_checkpoint,
    read_weights,
    to_torchaudio_names,
)
from server.models.hf.wav2vec2 import Wav2Vec2Backbone

logger = logging.getLogger(__name__)

NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm's epsilon


def fold_matrix(vocab: dict[str, int], hf_vocab_size: int, pad_id: int) -> torch.Tensor:
    """[V_hf, 29] one-hot: which CharTokenizer symbol each HF token spells (else blank)."""
    symbols = CharTokenizer.symbols
    fold = torch.zeros(hf_vocab_size, len(symbols))
    fold[:, BLANK] = 1.0  # ids vocab.json does not name, and tokens we cannot spell
    for token, index in vocab.items():
        text = " " if token == "|" else token.lower()
        if index != pad_id and text in symbols[1:]:
            fold[index] = 0.0
            fold[index, symbols.index(text)] = 1.0
    if fold[:, BLANK].sum() == hf_vocab_size or not fold[:, 3:].any():
        raise HfCheckpointError(
            "vocab.json spells none of a-z: only Latin character vocabularies are supported"
        )
    return fold


def fold_log_probs(z: torch.Tensor, fold: torch.Tensor) -> torch.Tensor:
    """Logits (or log-probabilities) [B, T, V_ckpt] -> log-probabilities [B, T, 29] of our
    symbols: each the log of the summed probabilities of the tokens `fold` maps to it."""
    top = z.amax(dim=-1, keepdim=True)
    folded = torch.exp(z - top) @ fold.to(z.dtype)  # [B, T, 29], sums per symbol
    total = folded.sum(dim=-1, keepdim=True)
    return torch.log(folded.clamp_min(1e-30)) - torch.log(total)


class StackedPositionalConv(nn.Module):
    """Data2VecAudio's positional embedding: `depth` x (grouped conv, trim, LN, GELU).

    Semantics: h = x^T; repeat depth: h = gelu(LN_no_affine(trim(conv(h)))); return h^T.
    x [B, T, D] -> [B, T, D]; trim drops the last frame when the kernel is even.
    """

    def __init__(self, embed_dim: int, kernel: int, groups: int, depth: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.trim = 1 if kernel % 2 == 0 else 0
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    "conv": nn.Conv1d(
                        embed_dim, embed_dim, kernel, padding=kernel // 2, groups=groups
                    )
                }
            )
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """pad_mask [B, T] True on padding: padded frames are re-zeroed between layers, so
        each utterance sees the zeros it sees alone (HF's batched forward lets the padding
        leak into the last frames through the second conv; its solo forward does not)."""
        h = x.transpose(1, 2)  # [B, D, T]
        for layer in self.layers:
            h = layer["conv"](h)
            if self.trim:
                h = h[:, :, : -self.trim]
            h = nn.functional.layer_norm(h.transpose(1, 2), (self.embed_dim,)).transpose(1, 2)
            h = nn.functional.gelu(h)
            if pad_mask is not None:
                h = h.masked_fill(pad_mask[:, None, :], 0.0)
        return h.transpose(1, 2)


class HfCtcBackbone(Wav2Vec2Backbone):
    """server.models.backbone.Backbone for the wav2vec2 family's CTC folders (SUPPORTED)."""

    def __init__(self, checkpoint: HfCtcCheckpoint) -> None:
        nn.Module.__init__(self)  # not Wav2Vec2Backbone's: the architecture is config.json's
        self.checkpoint = checkpoint
        self.is_wavlm = checkpoint.architecture == "WavLMForCTC"
        build = torchaudio.models.wavlm_model if self.is_wavlm else torchaudio.models.wav2vec2_model
        self.model = build(**checkpoint.torchaudio_config, aux_num_out=checkpoint.hf_vocab_size)
        if checkpoint.pos_conv_layers:
            config = checkpoint.torchaudio_config
            self.model.encoder.transformer.pos_conv_embed = StackedPositionalConv(
                self.model.encoder.transformer.layer_norm.normalized_shape[0],
                config["encoder_pos_conv_kernel"],
                config["encoder_pos_conv_groups"],
                checkpoint.pos_conv_layers,
            )
        if not checkpoint.feat_proj_layer_norm:
            self.model.encoder.feature_projection.layer_norm = nn.Identity()
        transformer = self.model.encoder.transformer
        self.hidden_dim = transformer.layer_norm.normalized_shape[0]
        self.num_layers = len(transformer.layers)
        self.vocab_size = CharTokenizer().vocab_size
        fold = fold_matrix(checkpoint.vocab, checkpoint.hf_vocab_size, checkpoint.pad_id)
        self.register_buffer("fold", fold)  # [V_hf, 29]; in the fingerprint with the weights

    @classmethod
    def from_folder(cls, folder: str | Path) -> HfCtcBackbone:
        """Build from config.json, then load the weights strictly (names and shapes)."""
        checkpoint = read_checkpoint(folder)
        state = to_torchaudio_names(read_weights(folder), checkpoint.architecture)
        check_sizes(checkpoint, state)
        backbone = cls(checkpoint)
        expected = backbone.model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or wrong:
            raise HfCheckpointError(
                f"{folder}: weights do not match config.json: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
                + "".join(
                    f" ({k}: {tuple(state[k].shape)} != {tuple(expected[k].shape)})"
                    for k in wrong[:1]
                )
            )
        backbone.model.load_state_dict(state, strict=True)
        logger.info(
            "loaded %s from %s: D=%d, L=%d, V_hf=%d",
            checkpoint.architecture,
            folder,
            backbone.hidden_dim,
            backbone.num_layers,
            checkpoint.hf_vocab_size,
        )
        return backbone.eval()

    @classmethod
    def from_config(cls, config: dict) -> HfCtcBackbone:
        """Rebuild the architecture from config_dict() (weights come from the HRA checkpoint)."""
        checkpoint = dict(config["checkpoint"])
        checkpoint["torchaudio_config"] = dict(checkpoint["torchaudio_config"])
        checkpoint["torchaudio_config"]["extractor_conv_layer_config"] = [
            tuple(c) for c in checkpoint["torchaudio_config"]["extractor_conv_layer_config"]
        ]
        return cls(HfCtcCheckpoint(**checkpoint))

    def config_dict(self) -> dict:
        return {"type": "hf_ctc", "checkpoint": dict(self.checkpoint.__dict__)}

    def featurize(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform.float()
        if self.checkpoint.do_normalize:
            x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + NORM_EPS)
        return x[:, None]  # [N, 1]: the conv front end takes raw samples

    def embed(self, inputs: torch.Tensor, lengths: torch.Tensor):
        if not self.checkpoint.pos_conv_layers:
            return super().embed(inputs, lengths)
        features, lengths = self.model.feature_extractor(inputs[..., 0], lengths)
        x, _ = self.model.encoder._preprocess(features, lengths)  # zeroes padded frames
        transformer = self.model.encoder.transformer
        x = x + transformer.pos_conv_embed(x, padding_mask(lengths, x.shape[1]))
        return transformer.layer_norm(x), lengths  # data2vec: post-LN, norm before layers

    def layer(self, index: int, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        if not self.is_wavlm:
            return super().layer(index, x, pad_mask)
        # WavLM: every layer gates the relative position bias that layer 0's table gives
        # (HF and torchaudio carry it from layer to layer; recomputing it is the same).
        layers = self.model.encoder.transformer.layers
        b, t = pad_mask.shape
        bias = layers[0].attention.compute_bias(t, t).unsqueeze(0).repeat(b, 1, 1, 1)
        keys = torch.zeros(b, t, dtype=x.dtype, device=x.device).masked_fill(pad_mask, -10000.0)
        x, _ = layers[index](x, None, position_bias=bias, key_padding_mask=keys)
        return x

    def hf_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final hidden [B, T, D] -> the checkpoint's own CTC logits [B, T, V_hf]."""
        return Wav2Vec2Backbone.logits(self, x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final hidden [B, T, D] -> log-probabilities folded onto our symbols [B, T, 29]."""
        return fold_log_probs(self.hf_logits(x), self.fold)
