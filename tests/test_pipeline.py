"""The DVC pipeline, through the real `dvc repro` in a temporary git repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dvc_helpers import PIPELINE_TASKS, make_dvc_repo, ran_stages, run
from ruamel.yaml import YAML
from servers import RayHead

pytestmark = pytest.mark.e2e


VARIANTS = ("mhsa", "summarymixing")
TASKS = PIPELINE_TASKS
BASELINES = ["defaults", *(f"baseline@{task}" for task in TASKS)]  # fbank probes, once per task


def per_variant(*variants: str) -> list[str]:
    """The stage names of ``variants``' chains below `prepare`."""
    names = []
    for v in variants:
        names += [f"resolve@{v}", f"pretrain@{v}", f"finetune@{v}"]
        names += [f"probe@{v}-{task}" for task in TASKS]
    return names


@pytest.mark.timeout(1800)  # three `dvc repro` runs (the default: 900 s)
def test_whole_pipeline_then_nothing_then_only_what_a_change_touches(
    tmp_path: Path, mlflow_server: str, ray_cluster: RayHead
) -> None:
    repo = make_dvc_repo(tmp_path, tracking_uri=mlflow_server)
    ray = {"RAY_ADDRESS": ray_cluster.address}  # the stages train on the session's head node
    first = run(["dvc", "repro"], repo, timeout=1800, env=ray)
    assert ran_stages(first.stdout) == sorted(
        ["prepare", *BASELINES, *per_variant(*VARIANTS), "bench", "report"]
    )
    resolved = json.loads((repo / "resolved" / "mhsa" / "params.json").read_text())
    assert resolved["model"]["mixer"]["kind"] == "mhsa"
    assert resolved["ssl"]["mask_prob"] == 0.65  # defaults are written out
    for variant in VARIANTS:
        assert (repo / "models" / variant / "encoder.pt").is_file()
        pretrain = json.loads((repo / "metrics" / "pretrain" / f"{variant}.json").read_text())
        assert pretrain["steps"] == 2
        finetune = json.loads((repo / "metrics" / "finetune" / f"{variant}.json").read_text())
        assert set(finetune["inits"]) == {"pretrained", "random_init"}
        for task in TASKS:
            probe = json.loads((repo / "metrics" / "probe" / variant / f"{task}.json").read_text())
            assert probe["variant"] == variant and probe["task"] == task
            assert probe["fbank_baseline"] == f"metrics/baseline/{task}.json"
    report = (repo / "reports" / "report.md").read_text()
    assert "summarymixing" in report and "mhsa" in report
    assert (repo / "reports" / "bench" / "pretrain.json").is_file()
    figures = list((repo / "reports" / "figures").glob("*.png"))
    assert figures and all(f.read_bytes()[:4] == b"\x89PNG" for f in figures)
    assert "report.md" in first.stdout  # the stage says where the report went

    second = run(["dvc", "repro"], repo, env=ray)
    assert ran_stages(second.stdout) == []

    # two changes in one run: a probe setting (every variant's probes, never its pre-training
    # or fine-tuning) and one variant's mixer (that variant's chain, then the summary)
    yaml = YAML()
    params = yaml.load(repo / "params.yaml")
    params["downstream"]["epochs"] = 2
    params["variants"]["mhsa"]["mixer"]["heads"] = 8
    yaml.dump(params, repo / "params.yaml")
    third = run(["dvc", "repro"], repo, timeout=1800, env=ray)
    sm_probes = [f"probe@summarymixing-{t}" for t in TASKS]
    assert ran_stages(third.stdout) == sorted(
        ["resolve@summarymixing", *BASELINES, *sm_probes, *per_variant("mhsa"), "bench", "report"]
    )

    check_mlflow(mlflow_server, repo)


def check_mlflow(uri: str, repo: Path) -> None:
    """One parent run per variant (of the current config) with its stage runs as children."""
    from mlflow import MlflowClient

    from smx.config import load
    from smx.train.checkpoint import config_hash

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("pipeline-e2e").experiment_id
    params = load(repo / "params.yaml")
    for variant in VARIANTS:
        encoder_hash = config_hash(params.variant(variant))
        (parent,) = client.search_runs(
            [experiment],
            f"tags.`smx.role` = 'variant' AND tags.variant = '{variant}' "
            f"AND tags.encoder_hash = '{encoder_hash}'",
        )
        children = client.search_runs(
            [experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
        roles = sorted(c.data.tags["smx.role"] for c in children)
        assert roles.count("pretrain") == 1 and roles.count("finetune") == 2
        tasks = {c.data.tags["smx.task"] for c in children if c.data.tags["smx.role"] == "probe"}
        assert tasks == set(TASKS)
        assert parent.data.tags["git_commit"] and len(parent.data.tags["dvc_lock_sha256"]) == 64
        assert any(name.startswith("probe.") for name in parent.data.metrics)
        registry = json.loads((repo / "models" / variant / "registry.json").read_text())
        version = client.get_model_version(registry["name"], registry["version"])
        assert registry["name"] == f"smx-{variant}" and version.tags["variant"] == variant
        assert {f"probe.{t}" for t in TASKS} <= {k.rsplit(".", 2)[0] for k in version.tags}
        latest = client.get_model_version_by_alias(registry["name"], "latest")
        assert latest.version == registry["version"]
    bench = client.search_runs([experiment], "tags.`smx.role` = 'bench'")
    assert len(bench) == 2  # the first run and after the mhsa change


def test_invalid_params_fail_the_stage_with_the_file_line_and_field(dvc_repo: Path) -> None:
    text = (
        (dvc_repo / "params.yaml")
        .read_text()
        .replace(
            "  mhsa:\n    mixer:\n      kind: mhsa\n      heads: 4",
            "  mhsa:\n    mixer:\n      kind: mhsa\n      heads: 5",
        )
    )
    (dvc_repo / "params.yaml").write_text(text)
    res = run(["dvc", "repro", "resolve@mhsa"], dvc_repo, check=False)
    assert res.returncode != 0
    assert (
        "params.yaml:" in res.stderr
        and "variants.mhsa.mixer.heads: 5 does not divide" in res.stderr
    )
    assert not (dvc_repo / "resolved" / "mhsa" / "params.json").exists()
