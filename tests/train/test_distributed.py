"""smx.train.distributed: DDP's gradient buckets, NCCL settings of the workers."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from smx.bench.gpu_checks import BUCKET_WARNING, _warn_always, ddp_buckets
from smx.train.distributed import NCCL_DEFAULTS, ddp_kwargs, process_group_backend, worker_env


@pytest.fixture
def one_process_group(tmp_path: Path) -> Iterator[None]:
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group(process_group_backend(False), store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.usefixtures("one_process_group")
def test_the_bucket_check_hears_a_layout_mismatch_every_time() -> None:
    """The control: a weight re-laid-out after DDP built its buckets makes DDP warn, and the
    check hears it even after torch's warn-once has already fired in this process."""
    for _ in range(2):
        layer = torch.nn.Linear(4, 3)
        model = torch.nn.parallel.DistributedDataParallel(layer, **ddp_kwargs(False))
        layer.weight.data = layer.weight.data.t().contiguous().t()  # column-major from now on
        with warnings.catch_warnings(record=True) as caught, _warn_always():
            warnings.simplefilter("always")
            model(torch.randn(2, 4)).sum().backward()
        assert any(BUCKET_WARNING in str(w.message).lower() for w in caught)


def test_the_objective_in_ddp_keeps_float32_gradients_in_their_buckets() -> None:
    """A bf16 step of the wav2vec 2.0 objective in one-process DDP (gloo), as the GPU check."""
    detail = ddp_buckets(torch.device("cpu"))
    assert detail == "gloo, {'find_unused_parameters': False, 'gradient_as_bucket_view': True}"


def test_gpu_workers_get_nccl_settings_and_the_drivers_own_win() -> None:
    driver = {"MLFLOW_TRACKING_URI": "http://m", "NCCL_DEBUG": "INFO", "NCCL_IB_DISABLE": "1"}
    gpu = worker_env(driver, use_gpu=True, prefixes=("MLFLOW_",))
    assert gpu == {
        "MLFLOW_TRACKING_URI": "http://m",
        "NCCL_DEBUG": "INFO",
        "NCCL_IB_DISABLE": "1",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": NCCL_DEFAULTS["TORCH_NCCL_ASYNC_ERROR_HANDLING"],
    }
    assert worker_env(driver, use_gpu=False, prefixes=("MLFLOW_",)) == {
        "MLFLOW_TRACKING_URI": "http://m"
    }


def test_the_training_launch_gives_the_workers_that_environment() -> None:
    import smx.train.launch as launch

    source = inspect.getsource(launch.make_trainer)
    assert "worker_env(os.environ, cluster.use_gpu, FORWARDED_ENV)" in source
    assert 'worker_runtime_env={"env_vars": env}' in source
