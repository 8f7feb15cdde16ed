"""build_objective from a validated configuration, and the LossOutput contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from ssl_tiny import random_batch, tiny_model_cfg

from smx.config import Params
from smx.ssl import BestRQObjective, LossOutput, Wav2Vec2Objective, build_objective


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def params(kind: str, frontend: str, **ssl) -> Params:
    model = tiny_model_cfg(frontend=frontend).model_dump()
    return Params.model_validate({"seed": 7, "model": model, "ssl": {"kind": kind, **ssl}})


def test_wav2vec2_from_params() -> None:
    p = params("wav2vec2", "mel_cnn", codebook_entries=8, code_dim=8, proj_dim=8)
    objective = build_objective(p)
    assert isinstance(objective, Wav2Vec2Objective)
    assert objective.encoder.mask_embedding is not None
    assert objective.quantizer.num_codes == 2 * 8
    assert objective.final_proj.in_features == 32 and objective.final_proj.out_features == 8
    assert len(objective.encoder.blocks) == 2
    # the mask generator starts from params.seed
    assert torch.equal(
        objective.generator.get_state(), torch.Generator().manual_seed(7).get_state()
    )
    torch.manual_seed(0)
    out = objective(random_batch())
    assert isinstance(out, LossOutput) and torch.isfinite(out.loss)


def test_bestrq_from_params() -> None:
    p = params("bestrq", "conv2d", codebook_size=32, num_codebooks=2)
    objective = build_objective(p)
    assert isinstance(objective, BestRQObjective)
    assert objective.encoder.mask_embedding is None
    assert objective.quantizer.input_dim == 4 * 80
    assert objective.quantizer.codebooks.shape == (2, 32, 16)
    assert [head.out_features for head in objective.heads] == [32, 32]
    # the frozen quantiser is seeded by params.seed: two builds agree
    again = build_objective(p)
    assert torch.equal(objective.quantizer.projection, again.quantizer.projection)
    torch.manual_seed(0)
    out = objective(random_batch())
    assert isinstance(out, LossOutput) and torch.isfinite(out.loss)
    objective.set_step(10)  # part of the interface, a no-op for BEST-RQ
