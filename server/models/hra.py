"""The HRA model: a frozen backbone, the shared controller, per-utterance heads.

The forward pass takes a HeadBatch (one head per utterance, mixed types and
tasks allowed), never a global "active adapter": that is what lets one fused
pass serve many tenants.
"""

from __future__ import annotations

import torch
from torch import nn

from adapters_store.head_batch import HeadBatch, controller_head_delta, residual_delta
from server.models.adapters import Controller
from server.models.backbone import Backbone, padding_mask


class HRAModel(nn.Module):
    def __init__(self, backbone: Backbone, controller_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.controller = Controller(backbone.hidden_dim, controller_dim)

    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor, heads: HeadBatch | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs [B, T_in, F], lengths [B] -> CTC logits [B, T, V], lengths [B]."""
        x, lengths = self.backbone.embed(inputs, lengths)
        mask = padding_mask(lengths, x.shape[1])
        use_controller = heads is not None and heads.uses_controller
        use_residual = heads is not None and heads.uses_residual
        h = x.new_zeros(*x.shape[:2], self.controller.dim) if use_controller else None
        in_place = not torch.is_grad_enabled()  # serving: no autograd graph to keep intact
        for index in range(self.backbone.num_layers):
            y = self.backbone.layer(index, x, mask)
            delta = None
            if use_controller:
                h = self.controller.step(y, h)
                delta = controller_head_delta(h, heads)
            if use_residual:
                r = residual_delta(y, index, heads)
                delta = r if delta is None else delta + r
            if delta is None:
                x = y
            else:  # in place when serving: one [B, T, D] allocation less per layer
                x = y.add_(delta) if in_place else y + delta
        return self.backbone.logits(x), lengths
