"""A code change never resumes a run made with other code: `dvc repro` and `dvc exp run`."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from dvc_helpers import make_dvc_repo, ran_stages, run
from ruamel.yaml import YAML
from servers import RayHead

pytestmark = pytest.mark.e2e

STAGE = "pretrain@summarymixing"
EXPERIMENT = "run-identity-e2e"
MIXER = Path("smx") / "nn" / "mixers" / "summary_mixing.py"
#: the combiner call of the offline cell, then with the summary scaled (other outputs)
COMBINE = "return self._combine(local, summary, frames_per_summary, keep)"
DOUBLED = "return self._combine(local, 2.0 * summary, frames_per_summary, keep)"
TRIPLED = "return self._combine(local, 3.0 * summary, frames_per_summary, keep)"


def edit_mixer(repo: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in the copy's SummaryMixing module (not committed)."""
    path = repo / MIXER
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {MIXER} once"
    path.write_text(text.replace(old, new))


def pretrain_runs(uri: str) -> list[mlflow.entities.Run]:
    """The finished pre-training MLflow runs of the test's experiment, oldest first."""
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`smx.role` = 'pretrain'"
    )
    return sorted(runs, key=lambda r: r.info.start_time)


@pytest.mark.timeout(900)
def test_an_uncommitted_mixer_edit_trains_a_new_run_through_repro_and_exp_run(
    tmp_path: Path, mlflow_server: str, ray_cluster: RayHead
) -> None:
    repo = make_dvc_repo(tmp_path, tracking_uri=mlflow_server)
    yaml = YAML()
    params = yaml.load(repo / "params.yaml")
    params["tracking"]["experiment"] = EXPERIMENT
    yaml.dump(params, repo / "params.yaml")
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], repo)
    ray = {"RAY_ADDRESS": ray_cluster.address}
    encoder = repo / "models" / "summarymixing" / "encoder.pt"
    storage = repo / "ray_results"

    first = run(["dvc", "repro", STAGE], repo, timeout=900, env=ray)
    assert STAGE in ran_stages(first.stdout)
    before = encoder.read_bytes()
    assert len(list(storage.glob("summarymixing-*"))) == 1

    edit_mixer(repo, COMBINE, DOUBLED)
    second = run(["dvc", "repro", STAGE], repo, timeout=900, env=ray)
    assert ran_stages(second.stdout) == [STAGE]  # the code is a dependency; the data is not
    after_repro = encoder.read_bytes()
    assert after_repro != before
    assert len(list(storage.glob("summarymixing-*"))) == 2  # a new Ray run, not a resume

    edit_mixer(repo, DOUBLED, TRIPLED)
    third = run(["dvc", "exp", "run", STAGE], repo, timeout=900, env=ray)
    assert STAGE in ran_stages(third.stdout)
    assert encoder.read_bytes() not in (before, after_repro)
    names = sorted(p.name for p in storage.glob("summarymixing-*"))
    assert len(names) == 3 and len({n.rsplit("-", 1)[0] for n in names}) == 1  # same config

    runs = pretrain_runs(mlflow_server)
    assert len(runs) == 3 and len({r.info.run_id for r in runs}) == 3
    sources = [r.data.tags["source_hash"] for r in runs]
    assert len(set(sources)) == 3
    assert [name.rsplit("-", 1)[1] for name in names] == sorted(s[:8] for s in sources)
