"""`smx finetune` and the DVC stage script refuse bad input with one sentence and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from finetune_helpers import copy_corpus, finetune_params
from tiny import write_encoder

from smx.config import Params

SMX = str(Path(sys.executable).parent / "smx")


def smx_finetune(
    config: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [SMX, "finetune", "--config", str(config), "--variant", "sm", "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


def write_config(folder: Path, params: Params) -> Path:
    path = folder / "config.json"
    path.write_text(json.dumps(params.model_dump(mode="json")))
    return path


def setup(tmp_path: Path, corpus_root: Path) -> tuple[Path, Path]:
    params = finetune_params(corpus_root, tmp_path / "ray", f"sqlite:///{tmp_path}/m.db")
    encoder = write_encoder(params, tmp_path / "models" / "sm" / "encoder.pt")
    return write_config(tmp_path, params), encoder


def one_sentence(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("smx finetune: "), res.stderr
    return lines[0]


def test_an_encoder_of_another_architecture_is_refused(corpus_root: Path, tmp_path: Path) -> None:
    config, _ = setup(tmp_path, corpus_root)
    data = json.loads(config.read_text())
    data["model"]["encoder"]["num_layers"] = 3
    other = write_encoder(Params.model_validate(data), tmp_path / "deeper.pt")
    res = smx_finetune(config, "--encoder", "deeper.pt", cwd=tmp_path)
    line = one_sentence(res)
    # a relative path is made absolute before the Ray workers (in other folders) get it
    assert f" {other} does not match the architecture of the given config" in line
    assert "encoder.blocks.2" in line  # the first extra weight is named
    assert not (tmp_path / "ray").exists()  # refused before Ray started


def test_a_corpus_without_transcripts_is_refused(corpus_root: Path, tmp_path: Path) -> None:
    def drop_text(cut: Any) -> Any:
        for sup in cut.supervisions:
            sup.text = None
        return cut

    corpus = copy_corpus(corpus_root / "synth", tmp_path / "data" / "synth", {"train": drop_text})
    params = finetune_params(tmp_path / "data", tmp_path / "ray", f"sqlite:///{tmp_path}/m.db")
    encoder = write_encoder(params, tmp_path / "encoder.pt")
    res = smx_finetune(write_config(tmp_path, params), "--encoder", str(encoder))
    line = one_sentence(res)
    assert "task 'asr' needs 'text' labels, but none of the" in line
    assert f"'train' split of {corpus} has one" in line


def test_an_empty_test_split_is_refused(corpus_root: Path, tmp_path: Path) -> None:
    corpus = copy_corpus(
        corpus_root / "synth", tmp_path / "data" / "synth", {"test": lambda c: None}
    )
    params = finetune_params(tmp_path / "data", tmp_path / "ray", f"sqlite:///{tmp_path}/m.db")
    encoder = write_encoder(params, tmp_path / "encoder.pt")
    res = smx_finetune(write_config(tmp_path, params), "--encoder", str(encoder))
    assert f"the 'test' split of {corpus} is empty" in one_sentence(res)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--init", "imagenet"],
            "--init 'imagenet' is not an init (choose pretrained, random or both)",
        ),
        (
            ["--encoder", "nowhere.pt"],
            "/nowhere.pt does not exist; run pre-training first",  # named absolute
        ),
    ],
)
def test_bad_options_are_named(
    corpus_root: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    config, _ = setup(tmp_path, corpus_root)
    assert expected in one_sentence(smx_finetune(config, *args))


def test_the_stage_script_names_its_missing_inputs(corpus_root: Path, tmp_path: Path) -> None:
    def stage(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "pipelines.finetune", "--variant", "sm", *args]
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=root)

    resolved, models = tmp_path / "resolved", tmp_path / "models"
    res = stage("--resolved", str(resolved), "--models", str(models))
    assert res.returncode == 2
    assert f"finetune@sm: {resolved / 'sm' / 'params.json'} is missing" in res.stderr
    params = finetune_params(corpus_root, tmp_path / "ray", f"sqlite:///{tmp_path}/m.db")
    (resolved / "sm").mkdir(parents=True)
    (resolved / "sm" / "params.json").write_text(json.dumps(params.model_dump(mode="json")))
    res = stage("--resolved", str(resolved), "--models", str(models))
    assert res.returncode == 2
    assert f"finetune@sm: {models / 'sm' / 'encoder.pt'} is missing" in res.stderr
    assert "dvc repro pretrain@sm" in res.stderr
