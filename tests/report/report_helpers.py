"""Realistic inputs of the report stage, written as the upstream stages write them.

Two variants (summarymixing, mhsa), the four tasks with both probes each, fine-tuning and a
scaling benchmark, with numbers chosen so that every ratio and verdict is known by hand:

- median step time 0.8 s vs 1.0 s (0.80x), peak memory 900 vs 1000 MB (0.90x);
- summarymixing's pre-trained encoder beats random init on asr, intent and style and is
  within the spread on speaker (0.20 ± 0.05 vs 0.22 ± 0.04); it beats fbank on all four;
- asr: summarymixing 0.60 ± 0.02 vs mhsa 0.70 ± 0.02 -> summarymixing wins;
  intent: 0.85 ± 0.03 vs 0.83 ± 0.03 -> within the spread; style: mhsa 0.74 vs 0.70 wins;
- bench, wav2vec2 at 80 s: summarymixing 6 s / 500 MiB vs MHSA 10 s / 1000 MiB (0.60x, 0.50x).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smx.config import PROBES
from smx.report.inputs import UPSTREAMS

PRIMARY = {
    "asr": ("wer", "lower"),
    "speaker": ("eer", "lower"),
    "intent": ("accuracy", "higher"),
    "style": ("accuracy", "higher"),
}

# variant -> task -> probe -> (mean, std) of the primary metric for the upstreams pretrained,
# random_init and fbank, in that order
Pair = tuple[float, float]
Scores = dict[str, dict[str, tuple[Pair, Pair, Pair]]]
PROBE_SCORES: dict[str, Scores] = {
    "summarymixing": {
        "asr": {
            "bilstm": ((0.60, 0.02), (0.90, 0.01), (0.80, 0.02)),
            "conv": ((0.70, 0.02), (0.95, 0.01), (0.85, 0.01)),
        },
        "speaker": {
            "xvector": ((0.20, 0.05), (0.22, 0.04), (0.30, 0.01)),
            "ecapa": ((0.25, 0.01), (0.26, 0.01), (0.31, 0.01)),
        },
        "intent": {
            "linear": ((0.80, 0.02), (0.50, 0.02), (0.40, 0.02)),
            "bilstm_linear": ((0.85, 0.03), (0.55, 0.02), (0.45, 0.02)),
        },
        "style": {
            "linear": ((0.70, 0.01), (0.60, 0.01), (0.50, 0.01)),
            "ecapa": ((0.65, 0.01), (0.58, 0.01), (0.52, 0.01)),
        },
    },
    "mhsa": {
        "asr": {
            "bilstm": ((0.70, 0.02), (0.90, 0.01), (0.80, 0.02)),
            "conv": ((0.75, 0.02), (0.95, 0.01), (0.85, 0.01)),
        },
        "speaker": {
            "xvector": ((0.35, 0.01), (0.22, 0.04), (0.30, 0.01)),
            "ecapa": ((0.36, 0.01), (0.26, 0.01), (0.31, 0.01)),
        },
        "intent": {
            "linear": ((0.83, 0.03), (0.50, 0.02), (0.40, 0.02)),
            "bilstm_linear": ((0.80, 0.03), (0.55, 0.02), (0.45, 0.02)),
        },
        "style": {
            "linear": ((0.74, 0.01), (0.60, 0.01), (0.50, 0.01)),
            "ecapa": ((0.66, 0.01), (0.58, 0.01), (0.52, 0.01)),
        },
    },
}

STEP_TIMES = {"summarymixing": [0.9, 0.8, 0.7, 0.85, 0.75], "mhsa": [1.2, 1.0, 0.9, 1.1, 0.95]}
PEAK_MB = {"summarymixing": 900.0, "mhsa": 1000.0}
FINETUNE_WER = {  # variant -> init -> (dev, test)
    "summarymixing": {"pretrained": (0.50, 0.55), "random_init": (0.90, 0.95)},
    "mhsa": {"pretrained": (0.60, 0.65), "random_init": (0.91, 0.96)},
}


#: task -> the chance level its probe results record (style records none, as older results)
CHANCE = {"asr": 1.0, "speaker": 0.5, "intent": 0.45}


def probe_json(variant: str, task: str) -> dict[str, Any]:
    """A probing result as :func:`smx.downstream.run.run_probing` writes it (two seeds)."""
    primary, better = PRIMARY[task]
    probes: dict[str, Any] = {}
    for probe, by_upstream in PROBE_SCORES[variant][task].items():
        assert probe in PROBES[task]
        probes[probe] = {}
        for upstream, (mean, std) in zip(UPSTREAMS, by_upstream, strict=True):
            layers = 1 if upstream == "fbank" else 5
            metrics = {primary: {"mean": mean, "std": std, "values": [mean - std, mean + std]}}
            if task == "asr":
                metrics["cer"] = {"mean": mean / 2, "std": std, "values": [mean / 2] * 2}
            probes[probe][upstream] = {
                "metrics": metrics,
                "layer_weights": {"mean": [1 / layers] * layers, "std": [0.0] * layers},
                "best_epoch": [3, 4],
            }
    result = {
        "task": task,
        "primary_metric": primary,
        "better": better,
        "seeds": [0, 1],
        "utterances": {"train": 80, "dev": 10, "test": 10},
        "probes": probes,
        "encoder": {"source": f"models/{variant}/encoder.pt", "layers": 5, "dim": 128},
        "variant": variant,
    }
    if task in CHANCE:
        result["chance"] = CHANCE[task]
    return result


#: variant -> streaming chunk size (s) -> CER added to the offline CER
STREAM_CER_GAP = {"summarymixing": {"1.28": 0.02, "0.64": 0.05}, "mhsa": {"0.64": 0.05}}


def finetune_json(variant: str) -> dict[str, Any]:
    inits = {}
    for init, (dev, test) in FINETUNE_WER[variant].items():
        dev_scores, test_scores = {"wer": dev, "cer": dev / 2}, {"wer": test, "cer": test / 2}
        for chunk, gap in STREAM_CER_GAP[variant].items():
            for scores in (dev_scores, test_scores):
                scores[f"stream_{chunk}s_wer"] = min(scores["wer"] + 2 * gap, 1.0)
                scores[f"stream_{chunk}s_cer"] = scores["cer"] + gap
        inits[init] = {
            "dev": dev_scores,
            "test": test_scores,
            "first_loss": 9.0,
            "loss": 2.0,
            "steps": 40,
            "freeze_steps": 10,
            "train_seconds": 61.5,
            "utterances": {"train": 80, "dev": 10, "test": 10},
        }
    return {"variant": variant, "inits": inits}


def bench_json() -> dict[str, Any]:
    """Two lengths, MHSA and SummaryMixing, plus a skipped Mamba point (wav2vec2)."""
    points = [  # kind, seconds, median_s, peak MiB
        ("summarymixing", 20.0, 1.5, 150),
        ("summarymixing", 80.0, 6.0, 500),
        ("mhsa", 20.0, 2.0, 200),
        ("mhsa", 80.0, 10.0, 1000),
    ]
    base = {s: (t, m) for k, s, t, m in points if k == "mhsa"}
    records = []
    for kind, seconds, median, mib in points:
        records.append(
            {
                "objective": "wav2vec2",
                "kind": kind,
                "seconds": seconds,
                "frames": int(seconds * 25),
                "device": "cpu",
                "median_s": median,
                "times_s": [median],
                "median_cpu_s": median,
                "cpu_times_s": [median],
                "peak_mem_bytes": mib * 2**20,
                "params": 1000,
                "loss": 9.0,
                "time_ratio": median / base[seconds][0],
                "cpu_ratio": median / base[seconds][0],
                "mem_ratio": mib / base[seconds][1],
            }
        )
    skipped = "projected 200 s per step exceeds the step budget of 120 s"
    records.append(
        {
            "objective": "wav2vec2",
            "kind": "mamba",
            "seconds": 80.0,
            "frames": 2000,
            "skipped": skipped,
        }
    )
    meta = {"bench": {"kinds": ["summarymixing", "mhsa", "mamba"], "threads": 1}, "machine": "x"}
    return {"meta": meta, "records": records}


def write_params(root: Path, tracking_uri: str, experiment: str = "smx-report-tests") -> Path:
    """A params.yaml with the two variants, the four default tasks and the tracking store."""
    data = {
        "variants": {
            "summarymixing": {"mixer": {"kind": "summarymixing"}},
            "mhsa": {"mixer": {"kind": "mhsa", "heads": 4}},
        },
        "downstream": {"seeds": 2, "epochs": 5, "probe_dim": 32, "probe_epochs": {"linear": 9}},
        "tracking": {"uri": tracking_uri, "experiment": experiment},
    }
    path = root / "params.yaml"
    path.write_text(json.dumps(data, indent=2))  # JSON is YAML 1.2
    return path


def write_inputs(root: Path) -> None:
    """Every upstream output of the report stage under ``root``, as the stages write them."""
    for variant in PROBE_SCORES:
        times = STEP_TIMES[variant]
        history = ["step,accuracy,audio_seconds_per_second,loss,lr,peak_memory_mb,step_time"]
        for i, t in enumerate(times):
            loss = 6.0 - i * (0.5 if variant == "summarymixing" else 0.4)
            history.append(f"{(i + 1) * 10},0.{i + 1},{120 / t:.6g},{loss:.6g},0.001,800,{t}")
        write(root / f"plots/pretrain/{variant}.csv", "\n".join(history) + "\n")
        metrics = {
            "loss": 4.0,
            "accuracy": 0.5,
            "first_loss": 6.0,
            "lr": 0.001,
            "peak_memory_mb": PEAK_MB[variant],
            "steps": 50,
            "skipped_steps": 0,
            "audio_hours": 1.389,
            "train_seconds": 40.0,
            "audio_seconds_per_second": 125.0,
            "steps_per_second": 1.25,
        }
        write_json(root / f"metrics/pretrain/{variant}.json", metrics)
        registry = {"model_uri": f"runs:/r{variant}/encoder", "name": f"smx-{variant}"}
        registry.update(version="3", uri=f"models:/smx-{variant}/3")
        registry["alias_uri"] = f"models:/smx-{variant}@latest"
        write_json(root / f"models/{variant}/registry.json", registry)
        for task in PRIMARY:
            write_json(root / f"metrics/probe/{variant}/{task}.json", probe_json(variant, task))
        write_json(root / f"metrics/finetune/{variant}.json", finetune_json(variant))
    write_json(root / "reports/bench/pretrain.json", bench_json())
    write(root / "dvc.lock", "schema: '2.0'\nstages: {}\n")
    for stage, seconds in STAGE_SECONDS.items():
        write_json(root / f"metrics/time/{stage}.json", {"stage": stage, "seconds": seconds})


#: the stages' recorded wall times (the benchmark and the configs recorded none)
STAGE_SECONDS = {
    "prepare": 10.0,
    "pretrain@summarymixing": 110.0,
    "pretrain@mhsa": 100.0,
    "finetune@summarymixing": 30.0,
    "finetune@mhsa": 30.0,
    **{f"baseline@{t}": 20.0 for t in PRIMARY},
    **{f"probe@{v}-{t}": 10.0 for v in ("summarymixing", "mhsa") for t in PRIMARY},
}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_json(path: Path, data: Any) -> None:
    write(path, json.dumps(data, indent=2))


#: where the imported variant's SpeechBrain checkpoint lies (as written in params.yaml)
IMPORT_SOURCE = "checkpoints/sb-summarymixing/save/CKPT+2024-01-01+00-00-00+00"


def write_import(root: Path, variant: str, source: str = IMPORT_SOURCE) -> None:
    """Turn ``variant`` into one whose encoder was imported from a SpeechBrain checkpoint, as
    the pretrain stage writes it (:func:`smx.stages.pretrain.import_variant`): metrics saying
    what was imported, the history CSV with its header only and no ``registry.json``."""
    from smx.stages.pretrain import IMPORT_CURVE_HEADER

    metrics = {
        "init": "speechbrain",
        "source": source,
        "files": ["encoder.ckpt", "hyperparams.yaml"],
        "layout": "wav2vec2",
        "parameters": 1234567,
        "steps": 0,
        "import_seconds": 1.2,
    }
    write_json(root / f"metrics/pretrain/{variant}.json", metrics)
    write(root / f"plots/pretrain/{variant}.csv", IMPORT_CURVE_HEADER)
    (root / f"models/{variant}/registry.json").unlink()
