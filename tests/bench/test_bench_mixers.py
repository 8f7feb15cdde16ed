"""Benchmark machinery: honest peak memory, fresh processes, ratios, the CLI's outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from smx.bench.measure import MMAP_THRESHOLD, measure, run_point
from smx.bench.mixers import MixerBench, ratios

MiB = 2**20


def test_measure_reports_the_peak_of_a_known_allocation() -> None:
    size = 64 * MiB

    def step() -> None:
        block = torch.ones(size // 4)  # float32: exactly `size` bytes, touched
        del block

    m = measure(step, torch.device("cpu"), repeats=2, warmup=1)
    assert len(m.times_s) == 2 and m.median_s > 0
    assert 0.9 * size <= m.peak_mem_bytes <= 1.2 * size


def test_point_runs_in_a_fresh_process_and_reports_errors() -> None:
    bench = MixerBench(
        lengths_s=[0.5],
        kinds=["summarymixing"],
        scopes=["encoder"],
        d_model=32,
        d_ffn=64,
        num_layers=1,
        repeats=1,
    )
    spec = {
        "scope": "encoder",
        "model": bench.model_cfg("summarymixing").model_dump(mode="json"),
        "frames": bench.frames(0.5),
        "batch": 1,
        "repeats": 1,
        "warmup": 1,
        "device": "cpu",
    }
    res = run_point("smx.bench.mixers_point", spec)
    assert set(res) >= {"median_s", "peak_mem_bytes", "params", "times_s"}
    assert res["params"] > 0 and res["peak_mem_bytes"] >= 0  # tiny: may fit in freed heap
    bad = run_point(
        "smx.bench.mixers_point", {**spec, "scope": "nope", "model": {"encoder": {"d_model": -1}}}
    )
    assert "error" in bad


def test_frames_follow_the_front_end_rate() -> None:
    assert MixerBench(frontend="mel_cnn").frames(10.0) == 498  # 20 ms frames
    assert MixerBench(frontend="conv2d").frames(10.0) == 251  # 40 ms frames


def test_ratios_are_per_scope_and_length() -> None:
    records = [
        {"scope": "encoder", "kind": "mhsa", "seconds": 80, "median_s": 4.0, "peak_mem_bytes": 400},
        {
            "scope": "encoder",
            "kind": "summarymixing",
            "seconds": 80,
            "median_s": 1.0,
            "peak_mem_bytes": 100,
        },
        {
            "scope": "mixer",
            "kind": "summarymixing",
            "seconds": 80,
            "median_s": 1.0,
            "peak_mem_bytes": 100,
        },
        {"scope": "encoder", "kind": "fastformer", "seconds": 80, "error": "boom"},
    ]
    out = ratios(records)
    assert out[1]["time_ratio"] == 0.25 and out[1]["mem_ratio"] == 0.25
    assert "time_ratio" not in out[2]  # no mhsa point at that scope
    assert "time_ratio" not in out[3]


def test_bench_mixers_cli_writes_json_and_png(tmp_path: Path) -> None:
    smx = shutil.which("smx", path=str(Path(sys.executable).parent)) or "smx"
    res = subprocess.run(
        [
            smx,
            "bench",
            "mixers",
            "--lengths",
            "0.5,1",
            "--kinds",
            "summarymixing,mhsa",
            "--scopes",
            "mixer",
            "--d-model",
            "32",
            "--layers",
            "1",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "mixers.json").read_text())
    kinds = sorted({(r["kind"], r["seconds"]) for r in data["records"]})
    assert kinds == [("mhsa", 0.5), ("mhsa", 1.0), ("summarymixing", 0.5), ("summarymixing", 1.0)]
    assert all("time_ratio" in r for r in data["records"])
    assert (tmp_path / "mixers.png").read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {tmp_path / 'mixers.json'}" in res.stdout


def test_bench_mixers_cli_rejects_unknown_kind() -> None:
    smx = shutil.which("smx", path=str(Path(sys.executable).parent)) or "smx"
    res = subprocess.run(
        [smx, "bench", "mixers", "--kinds", "lstm"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2 and "unknown mixer kind" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("threshold", [MMAP_THRESHOLD])
def test_mmap_threshold_is_small(threshold: int) -> None:
    assert threshold <= 1 * MiB  # large tensors must go back to the system when freed
