"""``smx bench pretrain``: the bench configs, budget skips, ratios against MHSA, CSV, MLflow."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from bench_helpers import smx, tiny_config

from smx.bench.common import BENCH_CONFIGS, default_config, load_bench_config, variant
from smx.bench.mixers import MixerBench
from smx.bench.pretrain import PretrainBench, csv_table, over_budget, run
from smx.config import MIXER_KINDS, NoMixingCfg


@pytest.mark.parametrize("objective", sorted(BENCH_CONFIGS))
def test_bench_configs_hold_the_mixers_bench_conformer(objective: str) -> None:
    params = load_bench_config(default_config(objective))
    assert params.ssl.kind == objective
    reference = MixerBench()
    for kind in MIXER_KINDS:
        model = variant(params, kind, "bench").model
        expected = reference.model_cfg(kind)
        assert model.encoder == expected.encoder  # 12 layers, d_model 256, d_ffn 1024, ...
        assert model.mixer == expected.mixer
    fe = params.model.frontend.kind
    assert fe == ("mel_cnn" if objective == "wav2vec2" else "conv2d")


@pytest.mark.parametrize("objective", sorted(BENCH_CONFIGS))
def test_bench_configs_hold_the_no_mixing_floor_with_the_same_encoder(objective: str) -> None:
    params = load_bench_config(default_config(objective))
    floor, sm = variant(params, "none", "bench").model, variant(params, "summarymixing", "b").model
    assert floor.mixer == NoMixingCfg()
    assert floor.encoder == sm.encoder and floor.frontend == sm.frontend


def test_the_floor_and_the_baseline_are_never_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tiny_config(tmp_path, "wav2vec2")
    path.write_text(
        path.read_text().replace("variants:\n", "variants:\n  none: {mixer: {kind: none}}\n")
    )
    cost = {"mhsa": 4.0, "summarymixing": 3.0, "none": 1.0}  # per second of audio

    def fake_point(module: str, spec: dict, threads: int | None = None) -> dict:
        kind, seconds = spec["params"]["model"]["mixer"]["kind"], spec["seconds"]
        return {"median_s": cost[kind] * seconds, "median_cpu_s": cost[kind] * seconds / 2,
                "peak_mem_bytes": round(cost[kind] * 2**20)}  # fmt: skip

    monkeypatch.setattr("smx.bench.measure.run_point", fake_point)
    bench = PretrainBench(
        configs=[("wav2vec2", path, load_bench_config(path))],
        kinds=["summarymixing", "mhsa", "none"],
        lengths_s=[1.0, 2.0],
        step_budget_s=1e-6,  # every point after the first length is over the budget
    )
    records = {(r["kind"], r["seconds"]): r for r in run(bench)}
    assert "exceeds the step budget" in records[("summarymixing", 2.0)]["skipped"]
    for kind in ("mhsa", "none"):
        assert "skipped" not in records[(kind, 2.0)]
    floor = records[("none", 2.0)]
    assert floor["time_ratio"] == floor["cpu_ratio"] == 0.25 and floor["mem_ratio"] == 0.25
    assert rows_of(csv_table(list(records.values())))[1]["wav2vec2_none_mem_ratio"] == "0.25"


def test_each_mode_divides_by_the_mhsa_and_the_floor_of_its_own_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tiny_config(tmp_path, "wav2vec2")
    path.write_text(
        path.read_text().replace("variants:\n", "variants:\n  none: {mixer: {kind: none}}\n")
    )
    seen: list[tuple[str, str, bool]] = []

    def fake_point(module: str, spec: dict, threads: int | None = None) -> dict:
        model, train = spec["params"]["model"], spec["params"]["train"]
        kind = model["mixer"]["kind"]
        eager = train.get("compile") is False
        seen.append((kind, model["mixer"].get("recompute", "activations"), eager))
        cost = {"mhsa": 4.0, "summarymixing": 3.0 if eager else 2.0, "none": 1.0}[kind]
        return {"median_s": cost, "median_cpu_s": cost, "peak_mem_bytes": round(cost * 2**20)}

    monkeypatch.setattr("smx.bench.measure.run_point", fake_point)
    bench = PretrainBench(
        configs=[("wav2vec2", path, load_bench_config(path))],
        kinds=["summarymixing", "mhsa", "none"],
        lengths_s=[1.0],
        modes=["default", "eager"],
    )
    records = {(r["mode"], r["kind"]): r for r in run(bench)}
    assert [r["mode"] for r in run(bench)][:3] == ["eager"] * 3  # eager first, as MODES
    assert ("summarymixing", "none", True) in seen  # eager: no recomputation, no compile
    assert ("summarymixing", "activations", False) in seen  # default: training's defaults
    sm, sm_eager = records[("default", "summarymixing")], records[("eager", "summarymixing")]
    assert sm["time_ratio"] == 0.5 and sm["floor_time_ratio"] == 2.0
    assert sm_eager["time_ratio"] == 0.75 and sm_eager["floor_mem_ratio"] == 3.0
    row = rows_of(csv_table(list(records.values())))[0]
    assert row["wav2vec2_summarymixing_floor_cpu_ratio"] == "2"
    assert row["wav2vec2_summarymixing_eager_floor_cpu_ratio"] == "3"


def rows_of(table: str) -> list[dict[str, str]]:
    return list(csv.DictReader(table.splitlines()))


def test_over_budget_projects_linearly_and_skips_after_a_gap() -> None:
    prev = {"seconds": 20.0, "median_s": 10.0}
    assert over_budget(prev, 40.0, budget_s=20.0) is None  # projected exactly 20 s
    assert "projected 21 s" in over_budget(prev, 42.0, budget_s=20.0)
    assert "not measured" in over_budget({"seconds": 40.0, "skipped": "x"}, 80.0, 1e9)
    assert "not measured" in over_budget({"seconds": 40.0, "error": "oom"}, 80.0, 1e9)


def test_bench_rejects_unknown_kinds_bad_lengths_and_missing_variants(tmp_path: Path) -> None:
    path = tiny_config(tmp_path, "wav2vec2")
    cfg = [("wav2vec2", path, load_bench_config(path))]
    with pytest.raises(ValueError, match=f"{path}: variants has no entry 'lstm'"):
        PretrainBench(configs=cfg, kinds=["lstm"])
    with pytest.raises(ValueError, match="kinds: no variant given"):
        PretrainBench(configs=cfg, kinds=[])
    with pytest.raises(ValueError, match=r"lengths: every duration must be .* above 0, got -1"):
        PretrainBench(configs=cfg, kinds=["mhsa"], lengths_s=[20, -1])
    with pytest.raises(ValueError, match=f"{path}: variants has no entry 'fastformer'"):
        PretrainBench(configs=cfg, kinds=["fastformer"])


def test_csv_has_one_row_per_length_and_empty_cells_for_skipped_points() -> None:
    records = [
        {"objective": "bestrq", "kind": "mhsa", "seconds": 20.0, "median_s": 4.0,
         "peak_mem_bytes": 8 * 2**20, "time_ratio": 1.0, "mem_ratio": 1.0},
        {"objective": "bestrq", "kind": "mamba", "seconds": 20.0, "median_s": 40.0,
         "peak_mem_bytes": 2 * 2**20, "time_ratio": 10.0, "mem_ratio": 0.25},
        {"objective": "bestrq", "kind": "mhsa", "seconds": 80.0, "median_s": 16.0,
         "peak_mem_bytes": 32 * 2**20, "time_ratio": 1.0, "mem_ratio": 1.0},
        {"objective": "bestrq", "kind": "mamba", "seconds": 80.0, "skipped": "budget"},
    ]  # fmt: skip
    rows = list(csv.DictReader(csv_table(records).splitlines()))
    assert [r["seconds"] for r in rows] == ["20", "80"]
    assert rows[0]["bestrq_mamba_time_s"] == "40" and rows[0]["bestrq_mamba_mem_ratio"] == "0.25"
    assert rows[0]["bestrq_mhsa_peak_mib"] == "8" and rows[1]["bestrq_mhsa_peak_mib"] == "32"
    assert rows[1]["bestrq_mamba_time_s"] == "" and rows[1]["bestrq_mamba_time_ratio"] == ""


@pytest.mark.e2e
def test_pretrain_cli_measures_both_objectives_against_mhsa_of_the_same_run(
    tmp_path: Path,
) -> None:
    configs = ",".join(str(tiny_config(tmp_path, o)) for o in ("wav2vec2", "bestrq"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = smx(
        "bench", "pretrain", "--configs", configs, "--kinds", "summarymixing,mhsa",
        "--lengths", "1,2", "--repeats", "1", "--step-budget", "1e-6", "--modes", "default",
        "--tracking-uri", uri, "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "out" / "pretrain.json").read_text())
    assert set(data["meta"]["bench"]["configs"]) == {"wav2vec2", "bestrq"}
    records = data["records"]
    assert len(records) == 8  # 2 objectives x 2 mixers x 2 lengths
    measured = [r for r in records if "median_s" in r]
    skipped = [r for r in records if "skipped" in r]
    # every 1 s step takes longer than 1e-6 s, so every 2 s point is over the budget, except
    # MHSA's: the baseline of the ratios is never skipped
    assert {(r["kind"], r["seconds"]) for r in skipped} == {("summarymixing", 2.0)}
    assert len(skipped) == 2 and all("exceeds the step budget" in r["skipped"] for r in skipped)
    assert {(r["kind"], r["seconds"]) for r in measured if r["kind"] == "mhsa"} == {
        ("mhsa", 1.0),
        ("mhsa", 2.0),
    }
    for r in measured:
        assert r["params"] > 0 and r["peak_mem_bytes"] >= 0 and len(r["times_s"]) == 1
        key = (r["objective"], r["seconds"])
        base = next(
            b for b in measured if b["kind"] == "mhsa" and (b["objective"], b["seconds"]) == key
        )
        assert r["time_ratio"] == pytest.approx(r["median_s"] / base["median_s"])
        assert r["cpu_ratio"] == pytest.approx(r["median_cpu_s"] / base["median_cpu_s"])
        assert r["mem_ratio"] == pytest.approx(r["peak_mem_bytes"] / max(base["peak_mem_bytes"], 1))
    assert {r["frames"] for r in records if r["objective"] == "bestrq"} == {26, 51}  # 40 ms
    assert {r["frames"] for r in records if r["objective"] == "wav2vec2"} == {48, 98}  # 20 ms
    rows = list(csv.DictReader((tmp_path / "out" / "pretrain.csv").read_text().splitlines()))
    assert rows[0]["wav2vec2_mhsa_time_ratio"] == "1"
    assert (tmp_path / "out" / "pretrain.png").read_bytes()[:4] == b"\x89PNG"
    assert "MLflow run" in res.stdout and "'tiny-bench'" in res.stdout  # config's experiment
    # stdout is no terminal here, as under DVC: the table is printed wide, no cell wrapped
    assert re.search(r"│ summarymixing +│", res.stdout), res.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tiny-bench").experiment_id])
    history = client.get_metric_history(run.info.run_id, "bestrq.summarymixing.time_ratio")
    sm = next(r for r in measured if r["objective"] == "bestrq" and r["kind"] == "summarymixing")
    assert [(h.step, h.value) for h in history] == [(1, pytest.approx(sm["time_ratio"]))]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"pretrain.json", "pretrain.png", "pretrain.csv"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kinds", "lstm,mhsa"], "bench_wav2vec2.yaml: variants has no entry 'lstm'"),
        (["--lengths", "20,0"], "lengths: every duration must be a number of seconds above 0"),
        (["--lengths", "abc"], "lengths: must be comma-separated numbers of seconds"),
        (["--configs", "missing.yaml"], "missing.yaml"),
        (["--tracking-uri", "file:///tmp/x"], "--tracking-uri"),
    ],
)
def test_pretrain_cli_bad_input_is_one_sentence_and_exit_2(args: list[str], message: str) -> None:
    res = smx("bench", "pretrain", *args, timeout=120)
    assert res.returncode == 2, res.stdout
    assert message in res.stderr and "Traceback" not in res.stderr


def test_tracking_uri_none_logs_nothing_even_with_the_environment_variable_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smx.bench.cli import _tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/")  # nothing listens there
    assert _tracking_uri("none") is None and _tracking_uri(" None ") is None
    with pytest.raises(ValueError, match=r"127\.0\.0\.1:9"):  # without the option: the variable
        _tracking_uri(None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert _tracking_uri(None) is None
