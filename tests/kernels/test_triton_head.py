"""The Triton head kernel equals the torch reference (CPU, via Triton's interpreter).

Runs in a subprocess because TRITON_INTERPRET must be set before triton loads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import itertools, torch
    from kernels.reference import gather_matmul
    from kernels.triton_head import gather_matmul_triton
    cases = [  # (B, T, K, N, S, dtype)
        (1, 1, 32, 144, 1, torch.float32),
        (4, 37, 32, 144, 3, torch.float32),
        (7, 70, 144, 12, 16, torch.float32),
        (3, 33, 32, 144, 2, torch.float16),
    ]
    for B, T, K, N, S, dtype in cases:
        g = torch.Generator().manual_seed(B * 1000 + T)
        x = torch.randn(B, T, K, generator=g).to(dtype)
        pool = torch.randn(S, N, K, generator=g).to(dtype)
        slots = torch.randint(-1, S, (B,), generator=g)
        slots[0] = -1 if B > 1 else slots[0]
        ref = gather_matmul(x.float(), pool.float(), slots)
        out = gather_matmul_triton(x, pool, slots).float()
        tol = 1e-4 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(out, ref, atol=tol * K ** 0.5, rtol=tol)
    print("ok", len(cases))
    """
)


@pytest.mark.slow
def test_triton_kernel_matches_reference_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.getcwd(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok 4"
