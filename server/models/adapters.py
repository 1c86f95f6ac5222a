"""The HRA controller, shared by every task and layer (heads: adapters_store/).

Equations (docs/architecture.md), per frame, after backbone layer l:
    h_l = ReLU(W_c y_l + u * h_{l-1} + b_c)      shared controller, h_0 = 0
    x_l = y_l + Head_task(h_l)                    same head at every layer
Head families:
    linear:   Head(h) = V h                       V  [D, d_c]
    ffn:      Head(h) = V2 ReLU(V1 h)             V1 [r, d_c], V2 [D, r]
    residual: x_l = y_l + U_l ReLU(D_l y_l)       baseline, no controller;
              D_l [r, D], U_l [D, r] for each layer (the classic adapter)
"""

from __future__ import annotations

import torch
from torch import nn


class Controller(nn.Module):
    """IndRNN over depth, shared by all tasks and layers."""

    def __init__(self, hidden_dim: int, controller_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_dim, controller_dim)  # W_c, b_c
        self.recurrence = nn.Parameter(torch.full((controller_dim,), 0.5))  # u

    @property
    def dim(self) -> int:
        return self.proj.out_features

    def step(self, y: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.proj(y) + self.recurrence * h_prev)
