"""``smx bench stream`` (RTF against position) and ``smx bench roofline`` (FLOP counting)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from bench_helpers import smx, tiny_config

from smx.bench.common import load_bench_config
from smx.bench.roofline import MatmulCall, count_flops, matmul_seconds
from smx.bench.stream import StreamBench, rtf_at, summarize
from smx.nn.linear import BlockLinear

# --------------------------------------------------------------------------- stream


def test_rtf_at_is_the_median_of_the_window_ending_at_the_position() -> None:
    chunks = [{"end_s": 0.5 * i, "rtf": float(i)} for i in range(1, 21)]  # 0.5 .. 10 s
    assert rtf_at(chunks, 10.0, window_s=1.0) == 19.0  # chunks ending at 9, 9.5, 10 s
    assert rtf_at(chunks, 2.0, window_s=0.9) == 3.5  # 1.5 s and 2 s
    assert rtf_at(chunks, 30.0, window_s=5.0) is None
    out = summarize({"chunks": [*chunks, {"end_s": 300.0, "rtf": 38.0}]}, window_s=1.0)
    assert out["rtf_at"] == {"10": 19.0, "300": 38.0} and out["growth"] == 2.0


def test_stream_bench_takes_chunking_from_the_config_and_checks_it(tmp_path: Path) -> None:
    path = tiny_config(tmp_path, "wav2vec2")
    params = load_bench_config(path)
    bench = StreamBench(config=path, params=params, kinds=["summarymixing", "mhsa"])
    assert (bench.chunk, bench.left_chunks) == (8, None)  # model.streaming of the file
    assert bench.meta()["chunk_s"] == pytest.approx(0.16)  # 8 frames of 20 ms
    with pytest.raises(ValueError, match=r"unknown mixer kind\(s\) \['fastformer'\]"):
        StreamBench(config=path, params=params, kinds=["fastformer"])  # no streaming mode
    with pytest.raises(ValueError, match="chunk: must be an integer >= 1"):
        StreamBench(config=path, params=params, kinds=["mhsa"], chunk=0)
    with pytest.raises(ValueError, match="above 0, got -5"):
        StreamBench(config=path, params=params, kinds=["mhsa"], seconds=-5)


@pytest.mark.e2e
def test_stream_cli_reports_rtf_per_chunk_at_monotone_positions(tmp_path: Path) -> None:
    path = tiny_config(tmp_path, "wav2vec2")
    out = tmp_path / "out"
    res = smx(
        "bench", "stream", "--config", str(path), "--seconds", "2", "--chunk", "10",
        "--left-chunks", "3", "--warmup", "0.5", "--window", "1", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads((out / "stream.json").read_text())
    meta = data["meta"]["bench"]
    assert (meta["chunk_frames"], meta["left_chunks"], meta["chunk_s"]) == (10, 3, 0.2)
    assert [r["kind"] for r in data["records"]] == ["summarymixing", "mhsa"]
    for rec in data["records"]:
        frames = rec["frames"]  # 98 encoder frames for 2 s
        ends = [c["end_s"] for c in rec["chunks"]]
        assert frames == 98 and len(ends) == math.ceil(frames / 10)
        assert all(a < b for a, b in itertools.pairwise(ends))  # monotone positions
        assert ends[0] == pytest.approx(0.2) and ends[-1] == pytest.approx(frames * 0.02)
        assert all(c["rtf"] > 0 for c in rec["chunks"])
        assert rec["rtf_at"] == {"10": None, "300": None}  # the stream is only 2 s long
    assert (out / "stream.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kinds", "summarymixing,hypermixing"], "unknown mixer kind(s) ['hypermixing']"),
        (["--seconds", "0"], "every duration must be a number of seconds above 0, got 0"),
        (["--left-chunks", "some"], "left_chunks: must be 'all', 'config' or an integer"),
    ],
)
def test_stream_cli_bad_input_is_one_sentence_and_exit_2(args: list[str], message: str) -> None:
    res = smx("bench", "stream", *args, timeout=120)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


# --------------------------------------------------------------------------- roofline


def test_flop_count_of_a_linear_matches_the_hand_count() -> None:
    linear = torch.nn.Linear(16, 8)
    x = torch.randn(3, 5, 16, requires_grad=True)
    flops, calls = count_flops(lambda: linear(x).sum().backward())
    # forward [15, 16] @ [16, 8]; backward: grad input [15, 8] @ [8, 16], grad weight [8, 15] @ [15, 16]
    assert flops == 3 * 2 * 15 * 16 * 8 == 11520
    assert sorted((c.m, c.k, c.n) for c in calls) == [(8, 15, 16), (15, 8, 16), (15, 16, 8)]
    assert sum(c.flops for c in calls) == flops


def test_flop_count_of_a_head_split_linear_is_one_bmm_per_pass() -> None:
    layer = BlockLinear(16, 8, heads=2)  # two [8, 4] blocks
    x = torch.randn(15, 16)
    flops, calls = count_flops(lambda: layer(x))
    assert calls == [MatmulCall(batch=2, m=15, k=8, n=4)]
    assert flops == 2 * 2 * 15 * 8 * 4 == 1920  # half the FLOPs of a dense Linear(16, 8)


def test_flop_count_of_a_depthwise_convolution_counts_groups_in_the_backward() -> None:
    conv = torch.nn.Conv1d(8, 8, kernel_size=3, groups=8)  # the Conformer's depthwise conv
    x = torch.randn(2, 8, 12, requires_grad=True)  # 10 output frames
    flops, calls = count_flops(lambda: conv(x).sum().backward())
    forward = 2 * 2 * 10 * 8 * 3  # batch, frames, channels, taps: one multiply-add each
    assert flops == 3 * forward == 2880  # forward, grad input, grad weight
    assert calls == []  # no matmul to replay


def test_matmul_replay_runs_every_call() -> None:
    calls = [MatmulCall(1, 64, 64, 64)] * 3 + [MatmulCall(4, 32, 16, 8)]
    wall, cpu = matmul_seconds(calls, repeats=2, device=torch.device("cpu"))
    assert wall > 0 and cpu > 0


@pytest.mark.e2e
def test_roofline_cli_reports_flops_and_efficiency(tmp_path: Path) -> None:
    path = tiny_config(tmp_path, "wav2vec2")
    res = smx(
        "bench", "roofline", "--config", str(path), "--lengths", "1", "--repeats", "1",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    records = json.loads((tmp_path / "roofline.json").read_text())["records"]
    assert [(r["scope"], r["frames"]) for r in records] == [("mixer", 48), ("encoder", 48)]
    for r in records:
        assert 0 < r["matmul_flops"] <= r["flops"]  # the convolutions are counted, not replayed
        achieved = r["flops"] / r["median_s"]
        reference = r["matmul_flops"] / r["matmul_time_s"]
        assert r["efficiency"] == pytest.approx(achieved / reference)
        cpu = (r["flops"] / r["median_cpu_s"]) / (r["matmul_flops"] / r["matmul_cpu_s"])
        assert r["cpu_efficiency"] == pytest.approx(cpu)
    mixer = records[0]
    # SummaryMixing on 48 frames, d 32, heads 2: forward = 4 head-split 32 -> 32 layers (local
    # and summary MLPs, 2 * 48 * 32 * 32 / 2 each), the combiner's local half on every frame
    # (2 * 48 * 32 * 32) and its summary half on one row (2 * 1 * 32 * 32). Backward = grad
    # input + grad weight of every matmul (x requires grad): twice the forward.
    forward = 4 * (2 * 48 * 32 * 32 // 2) + 2 * 48 * 32 * 32 + 2 * 1 * 32 * 32
    assert mixer["flops"] == 3 * forward


def test_roofline_cli_rejects_bad_scopes_and_lengths() -> None:
    res = smx("bench", "roofline", "--scopes", "block", timeout=120)
    assert res.returncode == 2 and "scopes: must be a list of ['mixer', 'encoder']" in res.stderr
    res = smx("bench", "roofline", "--lengths", "-80", timeout=120)
    assert res.returncode == 2 and "above 0, got -80" in res.stderr
    assert "Traceback" not in res.stderr
