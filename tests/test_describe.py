"""smx.describe and `smx config describe`: parameter counts of the paper-scale configs, FLOPs
and saved activations against hand-computed numbers, the memory arithmetic, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smx.config import MIXER_KINDS, Params, load
from smx.describe import (
    ParamCount,
    Probe,
    count_config_parameters,
    count_parameters,
    describe,
    estimate_memory,
    measure,
    summary_rows,
)
from smx.ssl.objective import build_objective
from smx.train.pretrain import ENCODER_PREFIXES

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SMX = shutil.which("smx", path=str(Path(sys.executable).parent)) or "smx"

TINY = {
    "model": {
        "encoder": {"num_layers": 1, "d_model": 32, "d_ffn": 64, "kernel_size": 3},
        "frontend": {"cnn_channels": [32, 32]},
        "mixer": {
            "kind": "summarymixing",
            "local_hidden": [32],
            "local_out": 32,
            "summary_hidden": [32],
            "heads": 2,
        },
    },
    "ssl": {"kind": "wav2vec2", "codebook_entries": 8, "code_dim": 8, "proj_dim": 8},
    "data": {"max_batch_duration": 40.0},
}


def smx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMX, *args], capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=300
    )


# ------------------------------------------------------------------ FLOPs and saved tensors


def test_linear_flops_and_saved_input_match_hand_computation() -> None:
    linear = nn.Linear(4, 3)
    x = torch.randn(2, 5, 4, requires_grad=True)
    probe = measure(lambda: linear(x).sum(), exclude=linear.parameters())
    # forward: 10 rows x 4 inputs x 3 outputs multiply-adds = 120 MACs = 240 FLOPs;
    # backward: grad of the input and grad of the weight, 240 FLOPs each
    assert probe.forward_flops == 240
    assert probe.backward_flops == 480
    # autograd keeps the input (2 * 5 * 4 floats) for the weight gradient; the weight is excluded
    assert probe.saved_float_elements == 40
    assert probe.saved_other_bytes == 0


def test_grouped_convolution_backward_counts_groups() -> None:
    # torch 2.14's formula ignores groups for the weight gradient (8x too many FLOPs here)
    conv = nn.Conv1d(8, 8, kernel_size=5, groups=8)
    x = torch.randn(2, 8, 20, requires_grad=True)
    probe = measure(lambda: conv(x).sum(), exclude=conv.parameters())
    forward = 2 * 2 * 8 * 5 * 16  # 2 FLOPs x batch x channels x taps x output frames
    assert probe.forward_flops == forward
    assert probe.backward_flops == 2 * forward


def test_cpu_attention_kernel_is_counted() -> None:
    q, k, v = (torch.randn(1, 2, 6, 4, requires_grad=True) for _ in range(3))
    probe = measure(lambda: F.scaled_dot_product_attention(q, k, v).sum())
    # q k^T and (softmax) v: 2 products of 2 heads x 6 x 6 x 4 MACs each = 1152 FLOPs
    assert probe.forward_flops == 1152
    assert probe.backward_flops > probe.forward_flops


def test_integer_saved_tensors_are_counted_in_bytes() -> None:
    table = nn.Embedding(10, 3)
    index = torch.tensor([[1, 2, 3]])
    probe = measure(lambda: table(index).sum(), exclude=table.parameters())
    assert probe.saved_float_elements == 0
    assert probe.saved_other_bytes == 3 * 8  # the int64 indices


# ------------------------------------------------------------------ parameter counts


def test_parts_split_the_objective_as_the_encoder_checkpoint_does() -> None:
    params = Params.model_validate(TINY)
    objective = build_objective(params)
    counts = count_parameters(objective)
    named = dict(objective.named_parameters())
    kept = sum(p.numel() for n, p in named.items() if n.startswith(ENCODER_PREFIXES))
    assert counts.model == kept  # front-end + encoder = what encoder.pt holds
    assert counts.encoder == sum(p.numel() for p in objective.encoder.parameters())
    assert counts.frontend == sum(p.numel() for p in objective.extractor.parameters())
    assert counts.total == sum(p.numel() for p in objective.parameters())
    assert counts.ssl == counts.total - kept > 0
    assert counts.buffer_bytes == sum(b.numel() * b.element_size() for b in objective.buffers())


def _count(name: str) -> ParamCount:
    return count_config_parameters(load(CONFIGS / name))


W2V2_155M = sorted(p.name for p in CONFIGS.glob("w2v2_155m_*.yaml"))


def test_the_155m_configs_exist_for_both_mixers() -> None:
    kinds = {load(CONFIGS / name).model.mixer.kind for name in W2V2_155M}
    assert kinds == {"summarymixing", "mhsa"}


@pytest.mark.parametrize("name", W2V2_155M)
def test_155m_configs_are_within_2_percent_of_155m(name: str) -> None:
    counts = _count(name)
    # the paper's size counts the model kept after pre-training: front-end + encoder
    assert abs(counts.model / 155e6 - 1) < 0.02, counts
    assert abs(counts.total / 155e6 - 1) < 0.02, counts


def test_summarymixing_155m_matches_the_hand_computed_breakdown() -> None:
    counts = _count("w2v2_155m_summarymixing.yaml")
    # by hand: 154.8 M = blocks 152.8 + CNN 0.9 + input projection 0.4 +
    # quantiser and projections 0.6 (the quantiser: 512 x 640 logits + 640 x 128 codes)
    assert counts.total == pytest.approx(154.8e6, rel=1e-3)
    assert counts.frontend == 80 * 512 * 3 + 512 * 512 * 3 + 3 * 2 * 512  # 2 convs, 3 LNs
    assert counts.ssl == (512 * 640 + 640) + 640 * 128 + (256 * 256 + 256) + (768 * 256 + 256)


def test_same_dimension_mhsa_is_the_165m_model_of_the_published_recipe() -> None:
    counts = _count("w2v2_165m_mhsa.yaml")
    sm = _count("w2v2_155m_summarymixing.yaml")
    # per layer MHSA has q, k, v, out (4 x 768^2 + biases) = 2.36 M; SummaryMixing 1.48 M
    mhsa_layer = 4 * 768 * 768 + 4 * 768
    sm_layer = (8 * 96 * 96 + 768) * 4 + (2 * 768) * 768 + 768 + 2 * 2 * 768
    assert counts.encoder - sm.encoder == 12 * (mhsa_layer - sm_layer)
    assert counts.total == pytest.approx(165.3e6, rel=2e-3)


def test_bestrq_base_variants_cover_every_mixer_within_3_percent() -> None:
    files = sorted(CONFIGS.glob("bestrq_base_*.yaml"))
    kinds = [load(f).model.mixer.kind for f in files]
    assert sorted(kinds) == sorted(MIXER_KINDS)
    sizes = {f.name: count_config_parameters(load(f)).model for f in files}
    assert max(sizes.values()) / min(sizes.values()) - 1 <= 0.03, sizes


# ------------------------------------------------------------------ memory and describe


def test_memory_terms_follow_precision_and_workers() -> None:
    counts = ParamCount(frontend=100, encoder=900, ssl=24, trainable=1000, buffer_bytes=64)
    probe = Probe(0, 0, saved_float_elements=1000, saved_other_bytes=10)
    fp32 = Params.model_validate({"train": {"precision": "fp32"}})
    m = estimate_memory(counts, probe, 2.0, 6.0, fp32)
    assert (m.weights, m.gradients, m.optimizer, m.ddp, m.autocast) == (4160, 4000, 8000, 0, 0)
    assert m.activations == (1000 * 4 + 10) * 3
    assert m.total == 4160 + 4000 + 8000 + (1000 * 4 + 10) * 3
    bf16 = Params.model_validate({"train": {"precision": "bf16"}, "cluster": {"num_workers": 4}})
    m = estimate_memory(counts, probe, 2.0, 6.0, bf16)
    assert (m.ddp, m.autocast) == (4000, 2000)
    assert m.activations == (1000 * 2 + 10) * 3


def test_describe_scales_activations_with_the_batch_and_is_reproducible() -> None:
    params = Params.model_validate(TINY)
    a = describe(params, probe_seconds=1.0)  # batch: data.max_batch_duration = 40 s
    b = describe(params, batch_seconds=80.0, probe_seconds=1.0)
    assert a.params == count_config_parameters(params)
    assert a.forward_flops_per_second == b.forward_flops_per_second > 0
    # the backward does up to twice the forward's matrix work (no input gradient for the
    # first convolution, none for the frozen parts)
    assert 1.5 < a.train_flops_per_second / a.forward_flops_per_second < 3.0
    assert abs(b.memory.activations - 2 * a.memory.activations) <= 1
    assert b.memory.weights == a.memory.weights == 4 * a.params.total + a.params.buffer_bytes
    assert a.memory.batch_seconds == 40.0
    rows = dict(summary_rows(a, params))
    assert rows["parameters: model (front-end + encoder)"] == f"{a.params.model / 1e6:.2f} M"
    assert rows["memory per GPU: batch"] == "40 s of audio, bf16, 1 worker(s)"
    assert a.audio_seconds_per_step == 40.0 * params.train.grad_accum


@pytest.mark.parametrize("kwargs", [{"batch_seconds": 0.0}, {"probe_seconds": -1.0}])
def test_describe_rejects_non_positive_durations(kwargs: dict[str, float]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"^{name} must be a positive number of seconds"):
        describe(Params.model_validate(TINY), **kwargs)


# ------------------------------------------------------------------ the command line


def test_cli_describe_prints_json_matching_the_library(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(TINY))  # JSON is YAML
    res = smx("config", "describe", str(path), "--batch-seconds", "12", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    counts = count_config_parameters(load(path))
    assert data["params"]["total"] == counts.total
    assert data["params"]["model"] == counts.model
    assert data["memory"]["batch_seconds"] == 12.0
    assert data["memory"]["total"] == sum(
        v for k, v in data["memory"].items() if k not in ("total", "batch_seconds")
    )


def test_cli_describe_bad_input_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(TINY))
    res = smx("config", "describe", str(path), "--batch-seconds", "-5")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"{path}: batch_seconds must be a positive number of seconds, got -5.0"
    )


def test_cli_validates_every_shipped_config() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in CONFIGS.glob("*.yaml"))
    res = smx("config", "validate", *files)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"{f}: OK" for f in files]
