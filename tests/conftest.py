"""Fixtures shared by every test folder (this file also puts tests/ on sys.path).

What is expensive is made once per test session: the Ray head node (``ray_cluster``), the
MLflow server (``mlflow_server``), the synthetic corpus (``corpus_root``) and the tiny encoder
pre-trained on Ray (``pretrained``). Tests that use Ray are marked ``ray`` and those that use
the MLflow server ``server`` (``make test-fast`` leaves both out).

Under pytest-xdist (``make test``: ``-n 2``) each worker process is a session of its own. The
modules of :data:`LANES` each run whole on one worker, longest first: the Ray tests one after
the other on one head node, the whole-pipeline test beside them on another worker with a head
node of its own. Every other test goes to whichever worker is free.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import servers
from dvc_helpers import make_dvc_repo

if TYPE_CHECKING:
    from tiny import PretrainRun

#: test modules that run whole on one xdist worker: the lane of each (modules of one lane
#: share that worker's Ray head node and pre-trained encoder)
LANES = {
    "tests/test_pipeline.py": "pipeline",
    "tests/train/test_pretrain.py": "ray",
    "tests/finetune/test_finetune_run.py": "ray",
    "tests/infra/test_ray_job.py": "ray",
    "tests/test_run_identity.py": "ray",
}
#: every test session (each xdist worker) caches the probes' hidden states in a folder of its
#: own, never in the user's cache; subprocesses (stages, `dvc repro`) inherit it
os.environ["SMX_CACHE_DIR"] = tempfile.mkdtemp(prefix="smx-test-cache-")
#: fixtures whose tests get a marker
MARKED_FIXTURES = {"ray_cluster": "ray", "mlflow_server": "server"}
#: the key of the Ray Train start count, in the stash and in an xdist worker's output
RAY_TRAIN_STARTS = "smx_ray_train_starts"
_starts_key = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the users of Ray and of the MLflow server (before ``-m`` selects); a Ray test
    outside :data:`LANES` is an error (under xdist it would start a second head node)."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in MARKED_FIXTURES.items():
            if fixture in used:
                item.add_marker(marker)
        module = item.nodeid.split("::", 1)[0]
        if "ray_cluster" in used and module not in LANES:
            raise pytest.UsageError(
                f"{item.nodeid} uses a Ray head node; add {module} to LANES in tests/conftest.py"
            )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n N`` (``--dist load``): the modules of :data:`LANES` as one work unit per lane,
    every other test a unit of its own; the largest units start first."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LaneScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return LANES.get(nodeid.split("::", 1)[0], nodeid)

    return LaneScheduling(config, log)


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """A temporary git + DVC copy of the project with a tiny corpus (see dvc_helpers)."""
    return make_dvc_repo(tmp_path)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite store) for the session."""
    with servers.mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/synth``: about 2.4 minutes of synthetic speech, 6 speakers."""
    from tiny import DATA

    from smx.config import DataCfg
    from smx.data.synth import prepare_synth

    root = tmp_path_factory.mktemp("data")
    prepare_synth(root / "synth", DataCfg.model_validate(DATA))
    return root


@pytest.fixture(scope="session")
def pretrained(
    corpus_root: Path,
    mlflow_server: str,
    ray_cluster: servers.RayHead,
    tmp_path_factory: pytest.TempPathFactory,
) -> PretrainRun:
    """The tiny encoder pre-trained for 30 updates on 2 Ray workers (tests/tiny.py), once per
    session: the pre-training tests check it, the fine-tuning tests start from it."""
    from tiny import pretrain_tiny

    return pretrain_tiny(corpus_root, tmp_path_factory.mktemp("pretrained"), mlflow_server)


@pytest.fixture(scope="session")
def ray_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.RayHead]:
    """One Ray head node (2 CPUs, dashboard) for the session; this process is its driver.

    Stage scripts and ``smx`` commands join it through ``RAY_ADDRESS``; ``ray job submit``
    goes to its dashboard. At the end the Ray Train runs it saw are counted (printed in the
    summary), then the head is stopped, whatever happened.
    """
    import ray

    os.environ.update(servers.RAY_ENV)
    with servers.ray_head(tmp_path_factory.mktemp("ray")) as head:
        ray.init(address=head.address, log_to_driver=False)
        try:
            yield head
        finally:
            try:
                request.config.stash[_starts_key] = ray_train_starts(head)
            finally:
                ray.shutdown()  # before the head stops: a driver that outlives it is killed


def ray_train_starts(head: servers.RayHead) -> int:
    """How many Ray Train runs (controller actors, finished or not) ``head`` has seen."""
    from ray.util.state import list_actors

    actors = list_actors(
        address=head.dashboard,
        filters=[("class_name", "=", "TrainController")],
        limit=10_000,  # the state API's largest page
        raise_on_missing_output=False,
    )
    return len(actors)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove the session's state cache; an xdist worker hands its Ray Train count on."""
    shutil.rmtree(os.environ["SMX_CACHE_DIR"], ignore_errors=True)
    starts = session.config.stash.get(_starts_key, None)
    if starts is not None and hasattr(session.config, "workeroutput"):
        session.config.workeroutput[RAY_TRAIN_STARTS] = starts


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """The xdist controller adds up its workers' Ray Train counts."""
    starts = getattr(node, "workeroutput", {}).get(RAY_TRAIN_STARTS)
    if starts is not None:
        stash = node.config.stash
        stash[_starts_key] = stash.get(_starts_key, 0) + starts


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The number of Ray Train starts of this test run (each costs seconds on 2 cores)."""
    starts = config.stash.get(_starts_key, None)
    if starts is not None and not hasattr(config, "workeroutput"):
        terminalreporter.write_line(f"Ray Train starts in this test run: {starts}")
