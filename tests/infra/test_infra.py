"""infra/: every file parses, and what must agree with the code does (entry point, environment
variables, resource names, image and Python versions, MLflow version, data mount, storage)."""

from __future__ import annotations

import ast
import copy
import inspect
import re
import shlex
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from ruamel.yaml import YAML

from smx.config import Params, load

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CLUSTER = INFRA / "aws" / "cluster.yaml"
RAYJOB = INFRA / "k8s" / "rayjob.yaml"
SMX_IMAGE = INFRA / "docker" / "Dockerfile"
MLFLOW = INFRA / "mlflow"
README = INFRA / "README.md"
YAML_FILES = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))
RAY_IMAGE = re.compile(r"^rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<py>\d)(?P<minor>\d+)-gpu$")
ENV_NAME = re.compile(r"\b((?:MLFLOW|RAY|SMX|DVC)_[A-Z0-9_]+)\b")


def read_yaml(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text())


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@cache
def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def dependency_spec(name: str) -> SpecifierSet:
    for dep in pyproject()["project"]["dependencies"]:
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?(.*)$", dep)
        if match and match.group(1).lower() == name:
            return SpecifierSet(match.group(3))
    raise AssertionError(f"{name} is not a dependency in pyproject.toml")


def cluster() -> dict[str, Any]:
    return read_yaml(CLUSTER)


def rayjob() -> dict[str, Any]:
    return read_yaml(RAYJOB)


def runtime_env() -> dict[str, Any]:
    return YAML(typ="safe", pure=True).load(rayjob()["spec"]["runtimeEnvYAML"])


def readme_commands() -> list[list[str]]:
    """The `smx ...` command lines after `--` in the README's `ray job submit` examples."""
    return [shlex.split(m) for m in re.findall(r"-- (smx [^\n`]+)", README.read_text())]


def entry_points() -> list[list[str]]:
    return [shlex.split(rayjob()["spec"]["entrypoint"]), *readme_commands()]


def cluster_configs() -> list[Path]:
    """The configs that the infra files and the README launch."""
    names = set()
    for argv in entry_points():
        names.add(argv[argv.index("--config") + 1])
    return sorted(ROOT / n for n in names)


def gpu_configs() -> list[tuple[str, Params]]:
    out = []
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        params = load(path)
        if params.cluster.use_gpu:
            out.append((path.name, params))
    return out


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_infra_yaml_file_parses(path: Path) -> None:
    assert isinstance(read_yaml(path), dict)


def test_the_expected_files_exist() -> None:
    for path in (CLUSTER, RAYJOB, SMX_IMAGE, README, MLFLOW / "docker-compose.yaml"):
        assert path.is_file(), path
    assert isinstance(runtime_env(), dict)  # the YAML inside the RayJob parses too


# ------------------------------------------------------------------ entry point


def test_entry_point_is_the_smx_console_script_with_a_valid_config() -> None:
    assert pyproject()["project"]["scripts"]["smx"] == "smx.cli:main"
    commands = entry_points()
    assert len(commands) >= 3  # the RayJob and the README's laptop and cluster submissions
    for argv in commands:
        assert argv[:3] == ["smx", "pretrain", "--config"], argv
        load(ROOT / argv[3])  # exists and validates


def test_pretrain_is_a_registered_command_with_a_config_option() -> None:
    import typer.main

    from smx.cli import app

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert "pretrain" in commands
    options = {opt for param in commands["pretrain"].params for opt in param.opts}
    assert "--config" in options


# ------------------------------------------------------------------ AWS cluster launcher


def test_cluster_yaml_passes_the_ray_launcher_schema() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cluster())))


def test_images_match_the_pinned_ray_and_python() -> None:
    ray = locked()["ray"]
    assert Version(ray) in dependency_spec("ray")
    images = [cluster()["docker"]["image"]]
    images += re.findall(r"^FROM (\S+)", SMX_IMAGE.read_text(), flags=re.M)
    for image in images:
        match = RAY_IMAGE.match(image)
        assert match, f"{image} is not a rayproject/ray:<version>-py<python>-gpu image"
        assert match["ray"] == ray, image
        python = Version(f"{match['py']}.{match['minor']}")
        assert python in SpecifierSet(pyproject()["project"]["requires-python"]), image
        assert f"py{match['py']}{match['minor']}" == pyproject()["tool"]["ruff"]["target-version"]
    assert rayjob()["spec"]["rayClusterSpec"]["rayVersion"] == ray


def test_cluster_nodes_and_gpu_resource_names_match_the_code() -> None:
    import smx.train.launch as launch

    source = inspect.getsource(launch)
    assert '{"CPU": cluster.cpus_per_worker}' in source and 'resources["GPU"]' in source
    cfg = cluster()
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"] == {"CPU": 0}  # no training on the head
    workers = [t for name, t in types.items() if name != cfg["head_node_type"]]
    assert len(workers) == 1
    node = workers[0]
    assert node["node_config"]["InstanceType"] == "p4d.24xlarge"
    gpus, cpus = node["resources"]["GPU"], node["resources"]["CPU"]
    assert (gpus, cpus) == (8, 96)  # p4d.24xlarge: 8 x A100, 96 vCPUs
    # smx refuses a GPU config when the cluster lacks the GPUs at start: they must be up
    assert node["min_workers"] >= 1
    for name, params in gpu_configs():
        c = params.cluster
        assert c.num_workers * c.gpus_per_worker <= gpus * node["min_workers"], name
        per_node = min(c.num_workers, gpus // max(1, int(c.gpus_per_worker)))
        assert per_node * c.cpus_per_worker <= cpus, name


def test_cluster_installs_the_project_from_the_lock_and_uses_a_token() -> None:
    cfg = cluster()
    assert cfg["file_mounts"]["/home/ray/smx"] == "."
    setup = " ; ".join(cfg["setup_commands"])
    assert "-r /home/ray/smx/requirements.lock" in setup
    assert "--no-deps /home/ray/smx" in setup
    for node in cfg["available_node_types"].values():
        # Ray's `latest_dlami` default is an Ubuntu 18.04 / CUDA 11.2 AMI: too old for CUDA 13
        assert node["node_config"]["ImageId"].lower() != "latest_dlami"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("RAY_AUTH_MODE=token" in c for c in cfg[key]), key
    assert "/home/ray/.ray/auth_token" in cfg["file_mounts"]


def test_data_mount_and_storage_agree_with_the_gpu_configs() -> None:
    cfg = cluster()
    commands = " ; ".join(cfg["initialization_commands"])
    mount = re.search(
        r"mount-s3 (?:--\S+ (?:\S+/ )?)*(?P<bucket>[a-z0-9.-]+) (?P<path>/\S+)", commands
    )
    assert mount, commands
    assert f"-v {mount['path']}:{mount['path']}:ro" in cfg["docker"]["run_options"]
    volumes = rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    k8s_mounts = {m["mountPath"] for m in volumes["containers"][0]["volumeMounts"]}
    assert gpu_configs()
    for name, params in gpu_configs():
        # multi-node runs need shared storage: checkpoints on the bucket, data on the mount
        assert params.data.root == mount["path"], name
        assert params.data.root in k8s_mounts, name
        assert params.cluster.storage_path.startswith(f"s3://{mount['bucket']}/"), name


# ------------------------------------------------------------------ KubeRay


def test_rayjob_releases_gpus_and_matches_the_config_it_runs() -> None:
    job = rayjob()
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert head["rayStartParams"]["num-cpus"] == "0"
    argv = shlex.split(spec["entrypoint"])
    params = load(ROOT / argv[argv.index("--config") + 1])
    assert params.cluster.use_gpu
    gpus = cpus = 0.0
    for group in spec["rayClusterSpec"]["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert group["replicas"] == group["minReplicas"] == group["maxReplicas"]
        gpus += int(limits["nvidia.com/gpu"]) * group["replicas"]
        cpus = max(cpus, float(limits["cpu"]))
    c = params.cluster
    assert gpus == c.num_workers * c.gpus_per_worker
    assert cpus >= c.num_workers * c.cpus_per_worker
    images = {head["template"]["spec"]["containers"][0]["image"]}
    images |= {
        g["template"]["spec"]["containers"][0]["image"]
        for g in spec["rayClusterSpec"]["workerGroupSpecs"]
    }
    assert images == {"${SMX_IMAGE}"}  # the image of infra/docker/Dockerfile


def test_rayjob_working_dir_is_the_project_folder_of_the_image() -> None:
    dockerfile = SMX_IMAGE.read_text()
    workdir = re.search(r"^WORKDIR (\S+)", dockerfile, flags=re.M)
    assert workdir and runtime_env()["working_dir"] == workdir.group(1)
    copied = {
        arg
        for line in re.findall(r"^COPY (.+)$", dockerfile, flags=re.M)
        for arg in line.split()[:-1]
        if not arg.startswith("--")
    }
    for needed in ("requirements.lock", "configs", "smx", "params.yaml", "dvc.yaml", ".rayignore"):
        assert needed in copied, needed
    assert "pip install --no-cache-dir -r requirements.lock" in dockerfile


# ------------------------------------------------------------------ environment variables


def _infra_env_names() -> dict[str, set[str]]:
    """Environment variable names the infra files set or pass, per file."""
    found: dict[str, set[str]] = {}
    spec = rayjob()["spec"]
    names = set(runtime_env()["env_vars"])
    pods = [spec["rayClusterSpec"]["headGroupSpec"]]
    pods += spec["rayClusterSpec"]["workerGroupSpecs"]
    for pod in pods:
        for container in pod["template"]["spec"]["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
    found["k8s/rayjob.yaml"] = names
    found["aws/cluster.yaml"] = set(ENV_NAME.findall(CLUSTER.read_text()))
    compose = read_yaml(MLFLOW / "docker-compose.yaml")
    for service, body in compose["services"].items():
        found[f"mlflow/docker-compose.yaml:{service}"] = set(body.get("environment", {}))
    json_envs = re.findall(r"--runtime-env-json '([^']+)'", README.read_text())
    found["README.md"] = {
        n for text in json_envs for n in re.findall(r'"([A-Z][A-Z0-9_]+)":', text)
    }
    return found


@cache
def _ray_sources() -> str:
    import ray

    package = Path(ray.__file__).parent
    return "\n".join(p.read_text(errors="ignore") for p in package.rglob("*.py"))


def _smx_sources() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "smx").rglob("*.py"))


def test_environment_variables_are_the_ones_the_code_and_tools_read() -> None:
    import mlflow.environment_variables as mlflow_env

    entrypoint = (MLFLOW / "entrypoint.sh").read_text()
    postgres_image = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    smx_code = _smx_sources()
    for where, names in _infra_env_names().items():
        assert names, where
        for name in names:
            if name.startswith("MLFLOW_"):
                ok = hasattr(mlflow_env, name)
            elif name.startswith("RAY_"):
                ok = name in _ray_sources()
            elif name.startswith(("SMX_", "DVC_")):
                ok = f'"{name}"' in smx_code
            elif name.startswith("AWS_"):
                ok = name in {"AWS_DEFAULT_REGION", "AWS_REGION"}
            elif where.endswith(":postgres"):
                ok = name in postgres_image
            else:  # the MLflow server's own settings, read by its entrypoint
                ok = f"${{{name}" in entrypoint
            assert ok, f"{where}: {name} is read by neither smx nor the tool it configures"


def test_tracking_variables_reach_the_driver_and_the_workers() -> None:
    import smx.tracking as tracking
    import smx.train.launch as launch

    assert 'os.environ.get("MLFLOW_TRACKING_URI")' in inspect.getsource(tracking)
    env = runtime_env()["env_vars"]
    assert env["MLFLOW_TRACKING_URI"].startswith("http")
    credentials = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    assert credentials <= _infra_env_names()["k8s/rayjob.yaml"]
    assert credentials | {"MLFLOW_TRACKING_URI"} <= _infra_env_names()["README.md"]
    # variables set on the driver reach the Ray Train workers when smx forwards their prefix
    for name in credentials | set(env):
        if name.startswith("MLFLOW_"):
            assert name.startswith(launch.FORWARDED_ENV), name


# ------------------------------------------------------------------ MLflow deployment


def test_mlflow_server_matches_the_client_version_and_has_the_three_backends() -> None:
    mlflow = locked()["mlflow"]
    assert Version(mlflow) in dependency_spec("mlflow")
    dockerfile = (MLFLOW / "Dockerfile").read_text()
    assert f'"mlflow[auth]=={mlflow}"' in dockerfile  # [auth]: Flask-WTF for basic-auth
    assert re.search(r"^FROM python:3\.11", dockerfile, flags=re.M)
    assert "psycopg2-binary==" in dockerfile and "boto3==" in dockerfile
    entrypoint = (MLFLOW / "entrypoint.sh").read_text()
    for flag in ("--app-name basic-auth", "--serve-artifacts", "--artifacts-destination"):
        assert flag in entrypoint, flag
    assert 'db="postgresql+psycopg2://' in entrypoint
    compose = read_yaml(MLFLOW / "docker-compose.yaml")
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["mlflow"]["ports"] == ["5000:5000"]


def test_env_example_lists_every_variable_compose_requires() -> None:
    text = (MLFLOW / "docker-compose.yaml").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):[?-]", text))
    example = {
        line.split("=", 1)[0]
        for line in (MLFLOW / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert required == example
    assert ".env" in (MLFLOW / ".gitignore").read_text().split()


# ------------------------------------------------------------------ README and storage


def test_readme_covers_the_steps_the_files_and_the_token_note() -> None:
    text = README.read_text()
    for path in (CLUSTER, RAYJOB, SMX_IMAGE, MLFLOW / "docker-compose.yaml"):
        assert str(path.relative_to(INFRA)) in text, path
    for phrase in ("RAY_AUTH_MODE=token", "cluster.storage_path", "data.root", "Shar", "USD"):
        assert phrase in text, phrase
    for ref in re.findall(r"configs/[a-z0-9_]+\.yaml", text):
        assert (ROOT / ref).is_file(), ref
    assert cluster_configs()


def _string_literals(tree: ast.AST) -> Iterator[ast.Constant]:
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in docstrings:
            yield node


def test_no_storage_uri_is_hard_coded_in_the_code() -> None:
    # a scheme followed by a bucket or host name; messages may still say "an s3:// URI"
    uri = re.compile(r"\b(s3|gs|gcs|az|abfss?|hdfs)://[\w$.{-]")
    found = []
    for path in sorted([*(ROOT / "smx").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        for node in _string_literals(tree):
            if uri.search(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "storage URIs belong in configs or the environment:\n" + "\n".join(found)


def test_the_image_records_the_commit_and_refuses_code_of_another_source_hash(
    tmp_path: Path,
) -> None:
    """The build step that checks the source hash, run here with the venv's smx."""
    import os
    import subprocess
    import sys

    from smx.provenance import source_hash

    dockerfile = SMX_IMAGE.read_text()
    assert re.search(r"^ENV SMX_GIT_COMMIT=\$\{SMX_COMMIT\}", dockerfile, flags=re.M)
    assert 'smx.source-hash="${SMX_SOURCE_HASH}"' in dockerfile
    step = re.search(
        r"^RUN pip install --no-cache-dir --no-deps \. && (.+?)(?=\n\S|\Z)", dockerfile, re.M | re.S
    )
    assert step, "the install step of the smx code"
    script = step.group(1).replace("\\\n", " ")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    stderr = {}
    for value, code in ((source_hash(), 0), ("0" * 64, 1), ("", 0)):
        res = subprocess.run(
            ["bash", "-c", script],
            env={**env, "SMX_SOURCE_HASH": value},
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert res.returncode == code, res.stderr
        stderr[value] = res.stderr
    assert f"has source hash {source_hash()}, not SMX_SOURCE_HASH=000" in stderr["0" * 64]


def test_rayignore_uploads_the_whole_package_and_leaves_out_the_outputs() -> None:
    """`ray job submit --working-dir .` reads .rayignore with gitignore rules."""
    import pathspec

    root = Path(__file__).resolve().parents[2]
    spec = pathspec.GitIgnoreSpec.from_lines((root / ".rayignore").read_text().splitlines())
    package = [p.relative_to(root).as_posix() for p in (root / "smx").rglob("*.py")]
    assert "smx/data/loader.py" in package
    assert [p for p in package if spec.match_file(p)] == []
    for output in ("data/synth/cuts.jsonl.gz", "models/sm/encoder.pt", "ray_results/x/y", "m.db"):
        assert spec.match_file(output), output


# ------------------------------------------------------------------ authentication, GPU metrics


def test_nothing_is_exposed_without_authentication() -> None:
    """The Ray dashboard binds all addresses only with token auth; MLflow asks for a password."""
    spec = rayjob()["spec"]["rayClusterSpec"]
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert spec["authOptions"] == {"mode": "token"}  # KubeRay sets RAY_AUTH_MODE and the token
    assert Version(spec["rayVersion"]) >= Version("2.52")  # Ray's token authentication
    head = " ; ".join(cluster()["head_start_ray_commands"])
    assert "--dashboard-host=0.0.0.0" in head and "export RAY_AUTH_MODE=token;" in head
    entrypoint = (MLFLOW / "entrypoint.sh").read_text()
    assert "--app-name basic-auth" in entrypoint
    assert "authorization_function = mlflow.server.auth:authenticate_request_basic_auth" in (
        entrypoint
    )
    assert ': "${MLFLOW_AUTH_ADMIN_PASSWORD:?' in entrypoint  # no default admin password
    services = read_yaml(MLFLOW / "docker-compose.yaml")["services"]
    published = {name for name, body in services.items() if body.get("ports")}
    assert published == {"mlflow"}  # PostgreSQL stays on the compose network


def test_gpu_images_log_gpu_system_metrics_to_mlflow() -> None:
    """MLflow's GPU monitor needs pynvml (nvidia-ml-py); the GPU nodes install one version."""
    import importlib.util

    import smx.tracking as tracking

    monitor = importlib.util.find_spec("mlflow.system_metrics.metrics.gpu_monitor")
    assert monitor and monitor.origin and "import pynvml" in Path(monitor.origin).read_text()
    assert "log_system_metrics=system_metrics" in inspect.getsource(tracking.RunLogger)
    (pin,) = pyproject()["project"]["optional-dependencies"]["gpu"]
    assert pin.startswith("nvidia-ml-py==")
    assert f'pip install --no-cache-dir "{pin}"' in SMX_IMAGE.read_text()
    assert any(f'"{pin}"' in c for c in cluster()["setup_commands"])
    carried = (ROOT / "scripts" / "gpu_wheels.txt").read_text().split()
    assert pin in carried  # the NVML check of scripts/gpu_check.sh uses the same version
    assert "psutil" in locked()  # the CPU and memory half of the system metrics
