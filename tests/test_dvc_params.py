"""dvc.yaml's `params:` lists beside the config: a setting a stage reads must re-run it."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from smx.config import DownstreamCfg

ROOT = Path(__file__).resolve().parents[1]

#: downstream settings the probe stage does not read: the task list spans the stage matrix,
#: `finetune` is the finetune stage's, `workers` only says how many trainings run at once
NOT_READ_BY_PROBE = {"tasks", "finetune", "workers"}


def stage_params(stage: str) -> set[str]:
    stages = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]
    entries = stages[stage].get("do", stages[stage])["params"]
    keys: set[str] = set()
    for entry in entries:
        if isinstance(entry, dict):
            for listed in entry.values():
                keys.update(listed)
        else:
            keys.add(entry)
    return keys


def test_the_probe_stage_lists_every_downstream_setting_it_reads() -> None:
    listed = {k.split(".", 1)[1] for k in stage_params("probe") if k.startswith("downstream.")}
    assert listed == set(DownstreamCfg.model_fields) - NOT_READ_BY_PROBE
    assert {"seed", "data"} <= stage_params("probe")


def test_the_baseline_stage_lists_what_the_probe_stage_lists_and_the_front_end() -> None:
    listed = stage_params("baseline")
    assert {k for k in listed if k.startswith("downstream.")} == {
        k for k in stage_params("probe") if k.startswith("downstream.")
    }
    assert {"seed", "data", "model.frontend"} <= listed


def test_the_finetune_stage_lists_the_finetune_section_and_the_batch_size() -> None:
    listed = stage_params("finetune")
    assert {"downstream.finetune", "downstream.max_batch_duration"} <= listed
