"""Running the project's real commands (dvc, git, smx) from tests, in temporary repositories."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tiny
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
#: the probing tasks of the study in a temporary repository
PIPELINE_TASKS = ("asr", "speaker")


def run(
    cmd: list[str],
    cwd: Path,
    check: bool = True,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``cwd`` with the project's virtualenv first on PATH and ``env`` added."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, **(env or {})}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return res


def make_dvc_repo(folder: Path, tracking_uri: str | None = None) -> Path:
    """A git + DVC repository holding a copy of the project with a tiny corpus and model.

    ``tracking_uri`` is written into params.yaml (experiment ``pipeline-e2e``; default: a
    SQLite store in the copy, never the project's).
    """
    for item in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / item, folder / item)
    for sub in ("smx", "pipelines"):
        shutil.copytree(ROOT / sub, folder / sub, ignore=shutil.ignore_patterns("__pycache__"))
    yaml = YAML()
    params = yaml.load(folder / "params.yaml")
    # the tiny corpus of the probe tests: enough dev utterances by training speakers and
    # held-out speakers for every task
    params["data"]["synth"].update(tiny.DATA["synth"])
    params["data"]["min_duration"] = 0.5
    params["data"].update(max_duration=6.0, max_batch_duration=6.0)
    params["model"] = tiny.MODEL
    params["ssl"] = tiny.SSL
    # the smallest study that runs every stage: 2 updates of pre-training and of fine-tuning
    # (one frozen), one seed and one epoch per probe, one benchmark length, and two tasks: ASR
    # (CTC decoding) and speaker verification (trials); the utterance-classification tasks
    # run the same stage (tests/downstream probe them through `smx probe` and the stage)
    params["downstream"]["tasks"] = list(PIPELINE_TASKS)
    params["train"] = {**tiny.TRAIN, "max_steps": 2, "warmup_steps": 1, "checkpoint_every": 1}
    params["cluster"]["num_workers"] = 1
    params["downstream"].update(seeds=1, epochs=1, probe_dim=16)
    params["downstream"]["probe_epochs"] = {}
    params["downstream"]["finetune"] = {"max_steps": 2, "freeze_steps": 1}
    params["bench"] = {"lengths_s": [1.0], "repeats": 1, "warmup": 0, "threads": 1}
    uri = tracking_uri or f"sqlite:///{folder.resolve()}/mlflow.db"
    params["tracking"] = {"uri": uri, "experiment": "pipeline-e2e"}
    yaml.dump(params, folder / "params.yaml")
    run(["git", "init", "-q"], folder)
    run(["dvc", "init", "-q"], folder)
    run(["dvc", "config", "core.analytics", "false"], folder)
    return folder


def ran_stages(output: str) -> list[str]:
    """Names of the stages a `dvc repro` output says it ran, sorted."""
    return sorted(
        line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")
    )
