"""Registered encoder models: one per variant, alias `latest`, loadable anywhere, no pickle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from downstream_helpers import ONE_THREAD
from ruamel.yaml import YAML
from test_probe_cli import smx, write_config

from smx.config import Params
from smx.downstream.errors import ProbeError
from smx.downstream.upstream import checkpoint_params, load_checkpoint_upstream, load_upstream
from smx.provenance import source_hash
from smx.serving import batch_audio
from smx.train.checkpoint import config_hash
from smx.train.launch import Launch
from smx.train.pretrain import log_encoder

VARIANT = "registry"
NAME = f"smx-test-{VARIANT}"

#: loads the registered model in a fresh process, from a folder outside the repository
LOAD = """
import json, sys
import mlflow, numpy as np
model = mlflow.pyfunc.load_model(sys.argv[1])
rng = np.random.default_rng(0)
waves = [rng.standard_normal(8000).astype("float32"), rng.standard_normal(5000).astype("float32")]
lengths = np.array([8000, 5000])
audio = np.zeros((2, 8000), dtype="float32")
audio[0], audio[1, :5000] = waves[0], waves[1]
out = model.predict({"audio": audio, "lengths": lengths})
first = model.predict({"audio": audio, "lengths": lengths}, params={"layer": 0})
np.save(sys.argv[2], out)
import smx
inputs = [s.name for s in model.metadata.signature.inputs.inputs]
print(json.dumps({"smx": smx.__file__, "shape": list(out.shape), "first": list(first.shape),
                  "inputs": inputs}))
"""


def registered(uri: str, encoder: Path, folder: Path) -> dict[str, str]:
    """Log ``encoder`` as pre-training does, to a new run of the server."""
    params = Params.model_validate(
        {**checkpoint_params(encoder).model_dump(), "tracking": {"registry_prefix": "smx-test"}}
    )
    launch = Launch(params, VARIANT, Path(__file__).resolve().parents[2], uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("registry-tests")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("registry-tests")
    )
    run_id = client.create_run(experiment_id).info.run_id
    client.set_terminated(run_id)
    return log_encoder(launch, run_id, encoder, folder / "registry.json")


@pytest.fixture(scope="module")
def uris(
    mlflow_server: str, encoder_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The tiny encoder registered once for the module's tests."""
    return registered(mlflow_server, encoder_file, tmp_path_factory.mktemp("registry"))


def expected_states(encoder: Path) -> np.ndarray:
    """The in-process encoder's last layer on the batch of :data:`LOAD`."""
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype("float32") for n in (8000, 5000)]
    batch = batch_audio(waves)
    upstream = load_checkpoint_upstream(encoder)
    states, _ = upstream(torch.from_numpy(batch["audio"]), torch.from_numpy(batch["lengths"]))
    return states[:, :, -1].numpy()


@pytest.mark.timeout(600)
def test_the_registered_model_loads_outside_the_repository_and_matches(
    mlflow_server: str, encoder_file: Path, tmp_path: Path, uris: dict[str, str]
) -> None:
    assert uris["alias_uri"] == f"models:/{NAME}@latest"
    client = mlflow.MlflowClient(mlflow_server)
    version = client.get_model_version(NAME, uris["version"])
    params = checkpoint_params(encoder_file)
    assert version.tags["config_hash"] == config_hash(params)
    assert version.tags["source_hash"] == source_hash() and version.tags["variant"] == VARIANT

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(ONE_THREAD, MLFLOW_TRACKING_URI=mlflow_server)
    res = subprocess.run(
        [sys.executable, "-c", LOAD, uris["alias_uri"], str(outside / "out.npy")],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    repo_smx = Path(__file__).resolve().parents[2] / "smx"
    assert not Path(seen["smx"]).is_relative_to(repo_smx)  # the model's own copy of smx ran
    assert Path(seen["smx"]).parent.name == "smx" and "code" in Path(seen["smx"]).parts
    assert seen["shape"][0] == 2 and seen["shape"][2] == 32 and seen["first"] == seen["shape"]
    assert seen["inputs"] == ["audio", "lengths"]
    got = np.load(outside / "out.npy")
    np.testing.assert_allclose(got, expected_states(encoder_file), atol=1e-5, rtol=0)
    assert np.all(got[1, 25:] == 0)  # padded frames of the shorter utterance (5000 samples)


def test_each_run_moves_latest_and_probing_reads_the_model_without_pickle(
    mlflow_server: str, encoder_file: Path, tmp_path: Path, uris: dict[str, str]
) -> None:
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("another-experiment")  # the process's active one: not the run's
    second = registered(mlflow_server, encoder_file, tmp_path)
    assert json.loads((tmp_path / "registry.json").read_text()) == second
    assert int(second["version"]) > int(uris["version"])
    client = mlflow.MlflowClient(mlflow_server)
    assert client.get_model_version_by_alias(NAME, "latest").version == second["version"]

    folder = Path(mlflow.artifacts.download_artifacts(second["uri"], dst_path=str(tmp_path / "m")))
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle")]
    assert [p.relative_to(folder).as_posix() for p in files if p.suffix == ".pt"] == [
        "data/encoder/encoder.pt"
    ]

    upstream, arch = load_upstream(second["alias_uri"], tracking_uri=mlflow_server)
    assert arch == checkpoint_params(encoder_file) and upstream.num_layers == 3
    reference = load_checkpoint_upstream(encoder_file).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in upstream.state_dict().items())
    data = arch.model_dump(mode="json")
    data["model"]["encoder"]["num_layers"] = 3
    deeper = Params.model_validate(data)
    with pytest.raises(ProbeError, match="does not match the architecture of the given config"):
        load_upstream(second["alias_uri"], deeper, tracking_uri=mlflow_server)


def test_probe_takes_a_registered_model(
    mlflow_server: str, corpus_root: Path, tmp_path: Path, uris: dict[str, str]
) -> None:
    config = write_config(tmp_path / "params.yaml", corpus_root)
    yaml = YAML()
    data = yaml.load(config)
    data["tracking"] = {"uri": mlflow_server}  # models:/ URIs resolve through it
    yaml.dump(data, config)
    res = smx(
        "probe", "--encoder", uris["alias_uri"], "--task", "intent", "--probe", "linear",
        "--config", str(config), "--out", "out", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    result = json.loads((tmp_path / "out" / "intent.json").read_text())
    assert result["encoder"]["source"] == uris["alias_uri"] and result["encoder"]["layers"] == 3


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/smx-test-nothing@latest", "cannot load the MLflow model models:/smx-test-no"),
        ("runs:/0123456789abcdef/encoder", "cannot load the MLflow model runs:/0123456789abcdef"),
    ],
)
def test_a_registry_uri_that_does_not_exist_is_one_sentence(
    mlflow_server: str, uri: str, message: str
) -> None:
    with pytest.raises(ProbeError, match=message) as info:
        load_upstream(uri, tracking_uri=mlflow_server)
    assert "\n" not in str(info.value)


def test_a_model_of_another_format_or_not_smx_is_refused(
    mlflow_server: str, encoder_file: Path, tmp_path: Path, uris: dict[str, str]
) -> None:
    client = mlflow.MlflowClient(mlflow_server)
    run_id = client.get_model_version(NAME, uris["version"]).run_id
    info = tmp_path / "data" / "smx.json"
    info.parent.mkdir()
    info.write_text(json.dumps({"format": 99, "smx_version": "9.0"}))
    (tmp_path / "data" / "encoder.pt").write_bytes(encoder_file.read_bytes())
    client.log_artifacts(run_id, str(tmp_path / "data"), "future")
    with pytest.raises(ProbeError, match=r"logged by smx 9\.0 in model format 99; this smx"):
        load_upstream(f"runs:/{run_id}/future", tracking_uri=mlflow_server)
    client.log_artifact(run_id, str(encoder_file), "plain")
    with pytest.raises(ProbeError, match="is not an smx encoder model"):
        load_upstream(f"runs:/{run_id}/plain", tracking_uri=mlflow_server)
    other = tmp_path / "other"
    other.mkdir()
    flavors = "flavors:\n  python_function:\n    loader_module: other.models\n    data: data\n"
    (other / "MLmodel").write_text(flavors)
    client.log_artifacts(run_id, str(other), "other")
    with pytest.raises(ProbeError, match=r"its MLmodel names loader module 'other\.models'"):
        load_upstream(f"runs:/{run_id}/other", tracking_uri=mlflow_server)


REQUIREMENTS_PROBE = """
import ast, json, sys
from importlib.metadata import packages_distributions
import numpy as np
from smx.serving import _load_pyfunc, batch_audio
model = _load_pyfunc(sys.argv[1])
model.predict(batch_audio([np.zeros(4000, np.float32)]))
tops = set()
for name, module in list(sys.modules.items()):
    if name.startswith("smx") and getattr(module, "__file__", None):
        for node in ast.walk(ast.parse(open(module.__file__).read())):
            if isinstance(node, ast.Import):
                tops |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
tops = {t for t in tops if t in sys.modules} - set(sys.stdlib_module_names) - {"smx"}
owners = packages_distributions()
print(json.dumps(sorted({d for top in tops for d in owners.get(top, [])})))
"""


def test_the_model_requirements_are_what_its_code_imports(
    encoder_file: Path, tmp_path: Path
) -> None:
    """Load and run a model's data folder in a fresh process; the third-party packages that
    the smx modules it loaded import (and that were imported) are the declared ones."""
    from smx.serving import REQUIREMENTS, pinned_requirements, write_model_folder

    folder = write_model_folder(tmp_path / "encoder", encoder_file, {"variant": VARIANT})
    res = subprocess.run(
        [sys.executable, "-c", REQUIREMENTS_PROBE, str(folder)],
        env=ONE_THREAD,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    imported = {name.lower().replace("_", "-") for name in json.loads(res.stdout)}
    assert imported == {name.lower().replace("_", "-") for name in REQUIREMENTS}
    assert [r.split("==")[0] for r in pinned_requirements()] == list(REQUIREMENTS)
