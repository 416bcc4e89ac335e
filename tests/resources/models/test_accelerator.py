"""With PyTorch and a CUDA device: evicting a model hands its GPU memory back.

PyTorch is never a dependency of tether; this module runs only where it is installed
with a CUDA device (and is skipped everywhere else). Without PyTorch, eviction is
covered by test_eviction.py, which also checks that torch is never imported.
"""

from __future__ import annotations

import pytest

from tests.resources.models.linear import Loader, started

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SIDE = 4096  # a 4096 x 4096 float32 layer: 64 MiB of weights


async def test_evicting_a_cuda_model_returns_its_memory_to_the_driver() -> None:
    async with started(max_loaded=1) as registry:
        registry.register("layer", lambda: torch.nn.Linear(SIDE, SIDE).cuda())
        registry.register("small", Loader())
        await registry.get("layer")  # the registry holds the only reference
        reserved = torch.cuda.memory_reserved()
        assert registry.model_stats("layer").memory_bytes == (SIDE * SIDE + SIDE) * 4

        await registry.get("small")  # evicts the layer

        assert torch.cuda.memory_reserved() <= reserved - SIDE * SIDE * 4
