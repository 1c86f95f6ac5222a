"""torchaudio's wav2vec2 / HuBERT family as an HRA backbone.

The encoder's transformer layers become the layers HRA wraps; the conv
feature extractor and positional convolution form the embedding step; `aux`
is the CTC projection. Weights come from a local file the user already has
(a torchaudio bundle in the torch hub cache, or any state dict): nothing is
downloaded here.

Note: wav2vec2-base's feature extractor uses GroupNorm over time, so unlike
our Conformer its outputs for a padded utterance differ slightly from a lone
run; the "layer_norm" extractor of the large models does not have that issue.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchaudio
from torch import nn

from server.models.ctc.tokenizer import CharTokenizer


class Wav2Vec2Backbone(nn.Module):
    """Implements server.models.backbone.Backbone around torchaudio.models.Wav2Vec2Model."""

    frame_seconds = 0.02  # the conv front end strides 320 samples at 16 kHz

    def __init__(self, factory: str = "wav2vec2_base", vocab_size: int | None = None, **kwargs):
        super().__init__()
        self.factory = factory
        self.vocab_size = vocab_size or CharTokenizer().vocab_size
        self.kwargs = kwargs
        self.model = getattr(torchaudio.models, factory)(aux_num_out=self.vocab_size, **kwargs)
        transformer = self.model.encoder.transformer
        self.hidden_dim = transformer.layer_norm.normalized_shape[0]
        self.num_layers = len(transformer.layers)

    @property
    def min_samples(self) -> int:
        """The conv front end's receptive field: the samples one output frame needs (400)."""
        field, stride = 1, 1
        for block in self.model.feature_extractor.conv_layers:
            field += (block.conv.kernel_size[0] - 1) * stride
            stride *= block.conv.stride[0]
        return field

    @classmethod
    def from_config(cls, config: dict) -> Wav2Vec2Backbone:
        return cls(**config)

    @classmethod
    def from_file(
        cls, path: str | Path, factory: str = "wav2vec2_base", **kwargs
    ) -> Wav2Vec2Backbone:
        """Load a local state dict (.safetensors, or .pt/.pth read with weights_only)."""
        backbone = cls(factory, **kwargs)
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = backbone.model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("aux.")]:
            raise ValueError(f"{path}: missing {missing}, unexpected {unexpected}")
        return backbone

    def config_dict(self) -> dict:
        return {
            "type": "wav2vec2",
            "factory": self.factory,
            "vocab_size": self.vocab_size,
            **self.kwargs,
        }

    def featurize(self, waveform: torch.Tensor) -> torch.Tensor:
        return waveform.float()[:, None]  # [N, 1]: the conv front end takes raw samples

    def embed(self, inputs: torch.Tensor, lengths: torch.Tensor):
        features, lengths = self.model.feature_extractor(inputs[..., 0], lengths)
        x, _ = self.model.encoder._preprocess(features, lengths)
        return self.model.encoder.transformer._preprocess(x), lengths

    def layer(self, index: int, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        b, t = pad_mask.shape
        attention_mask = (-10000.0 * pad_mask[:, None, None, :].to(x.dtype)).expand(b, 1, t, t)
        x, _ = self.model.encoder.transformer.layers[index](x, attention_mask)
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        transformer = self.model.encoder.transformer
        if not transformer.layer_norm_first:
            x = transformer.layer_norm(x)
        return self.model.aux(x)
