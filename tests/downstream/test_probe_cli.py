"""``smx probe`` as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from downstream_helpers import DATA, DOWNSTREAM, ONE_THREAD, TINY_MODEL, TINY_SSL
from ruamel.yaml import YAML

SMX = shutil.which("smx", path=str(Path(sys.executable).parent)) or "smx"


def smx(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMX, *args], capture_output=True, text=True, cwd=cwd, env=ONE_THREAD, timeout=300
    )


def write_config(path: Path, corpus_root: Path) -> Path:
    YAML().dump(
        {
            "seed": 0,
            "data": {**DATA, "root": str(corpus_root)},
            "model": TINY_MODEL,
            "ssl": TINY_SSL["wav2vec2"],
            "downstream": DOWNSTREAM,
            "variants": {"deep": {"encoder": {"num_layers": 3}}},
        },
        path,
    )
    return path


def test_probe_intent_writes_metrics_and_layer_weights(
    corpus_root: Path, encoder_file: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "params.yaml", corpus_root)
    res = smx(
        "probe", "--encoder", str(encoder_file), "--task", "intent", "--config", str(config),
        "--out", "out", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "wrote out/intent.json and out/intent_layer_weights.png" in res.stdout
    result = json.loads((tmp_path / "out" / "intent.json").read_text())
    assert result["encoder"] == {"source": str(encoder_file), "layers": 3, "dim": 32}
    assert set(result["probes"]) == {"linear", "bilstm_linear"}
    for by_upstream in result["probes"].values():
        assert set(by_upstream) == {"pretrained", "random_init", "fbank"}
        for entry in by_upstream.values():
            acc = entry["metrics"]["accuracy"]
            assert len(acc["values"]) == DOWNSTREAM["seeds"]
            assert all(0.0 <= v <= 1.0 for v in acc["values"])
            assert sum(entry["layer_weights"]["mean"]) == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "out" / "intent_layer_weights.png").read_bytes()[:4] == b"\x89PNG"


def test_probe_errors_are_one_sentence_and_exit_2(
    corpus_root: Path, encoder_file: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "params.yaml", corpus_root)
    base = ["probe", "--encoder", str(encoder_file), "--config", str(config), "--out", "out"]
    mismatch = smx(*base, "--task", "style", "--variant", "deep", cwd=tmp_path)
    assert mismatch.returncode == 2
    lines = mismatch.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"smx probe: {encoder_file} does not match the architecture")
    wrong_probe = smx(*base, "--task", "asr", "--probe", "ecapa", cwd=tmp_path)
    assert wrong_probe.returncode == 2
    assert wrong_probe.stderr.strip() == (
        "smx probe: probe 'ecapa' is not a probe of task 'asr' (choose from bilstm, conv)"
    )
    assert not (tmp_path / "out").exists()
