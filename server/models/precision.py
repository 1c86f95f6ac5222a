"""Lower-precision CPU serving of a frozen backbone (HRA_BACKBONE_PRECISION).

Only the backbone's layers change; the shared controller and every head stay float32,
so heads trained against the float32 model serve unchanged (and the fingerprint,
taken from the checkpoint's float32 tensors, still names the model heads bind to).
    float32   as trained (default)
    int8      torch.ao dynamic int8 quantization of the backbone's nn.Linear layers:
              weights int8, activations quantized per batch at run time (CPU only)
    bfloat16  the backbone's layers under CPU autocast to bfloat16, outputs cast back
Measured on the default model (docs/benchmarks.md, load_tests/bench_cpu_speedups.py):
int8 speeds up large batches only and costs some WER; bfloat16 keeps the WER but slows
small batches. Neither is equal-WER and faster at every batch size, so the default stays
float32.
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import torch

from server.models.hra import HRAModel

logger = logging.getLogger(__name__)

Precision = Literal["float32", "int8", "bfloat16"]


def apply_backbone_precision(model: HRAModel, precision: Precision, device: torch.device):
    """Convert model.backbone in place (CPU only; other devices keep float32)."""
    if precision == "float32":
        return model
    if device.type != "cpu":
        logger.warning("backbone precision %s is CPU only; %s keeps float32", precision, device)
        return model
    if precision == "int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # torch.ao's deprecation notice, once per start-up
            warnings.simplefilter("ignore")
            model.backbone = quantize_dynamic(model.backbone, {torch.nn.Linear}, torch.qint8)
    elif precision == "bfloat16":
        layer = model.backbone.layer

        def autocast_layer(index: int, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = layer(index, x, pad_mask)
            return y.float()

        model.backbone.layer = autocast_layer  # HRAModel steps layers via backbone.layer
    else:
        raise ValueError(f"unknown backbone precision {precision!r}")
    logger.info("Backbone layers run in %s; controller and heads stay float32", precision)
    return model
