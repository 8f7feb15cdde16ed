"""How the training workers talk to each other: process-group backend, NCCL settings, DDP.

Ray Train starts the process group (NCCL on GPU workers, gloo on CPU workers) and wraps the
objective in ``DistributedDataParallel`` (``ray.train.torch.prepare_model``); this module holds
what smx adds to both, so that the training launch and ``smx bench gpu``'s one-process DDP
check use the same settings.

- DDP: ``gradient_as_bucket_view=True``: each gradient *is* a view into its all-reduce
  bucket, so DDP neither copies gradients into the buckets nor keeps a second float32 copy of
  them (4 bytes per weight less), and a gradient's layout is its bucket's by construction
  (no "grad strides do not match bucket view strides" warning). Gradients stay float32 under
  bf16 autocast (the weights are float32: autocast casts copies, not the weights), so the
  all-reduce sums float32 and AdamW updates float32 master weights.
- NCCL: workers inherit the driver's ``NCCL_*`` and ``TORCH_NCCL_*`` variables (network
  interface, InfiniBand, debugging); unless set there, ``NCCL_DEBUG=WARN`` (NCCL says why a
  communicator failed) and ``TORCH_NCCL_ASYNC_ERROR_HANDLING=1`` (a failed or timed-out
  collective aborts the worker, so Ray Train restarts the group from the last checkpoint
  instead of hanging; Ray sets the same, made explicit here).

No Ray import here: this module is plain PyTorch and the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Environment variable prefixes forwarded from the driver to the GPU workers.
NCCL_PREFIXES = ("NCCL_", "TORCH_NCCL_")
#: NCCL settings of the GPU workers unless the driver's environment sets them.
NCCL_DEFAULTS = {"NCCL_DEBUG": "WARN", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1"}


def process_group_backend(use_gpu: bool) -> str:
    """``nccl`` for GPU workers, ``gloo`` for CPU workers (Ray Train's choice too).

    Example
    -------
    >>> process_group_backend(True), process_group_backend(False)
    ('nccl', 'gloo')
    """
    return "nccl" if use_gpu else "gloo"


def ddp_kwargs(find_unused_parameters: bool) -> dict[str, Any]:
    """Keyword arguments of ``DistributedDataParallel`` (``prepare_model``'s
    ``parallel_strategy_kwargs``).

    Arguments
    ---------
    find_unused_parameters : bool
        Whether some weights may get no gradient in a step (layerdrop skips whole layers).

    Example
    -------
    >>> ddp_kwargs(True)
    {'find_unused_parameters': True, 'gradient_as_bucket_view': True}
    """
    return {"find_unused_parameters": find_unused_parameters, "gradient_as_bucket_view": True}


def worker_env(
    environ: Mapping[str, str], use_gpu: bool, prefixes: tuple[str, ...] = ()
) -> dict[str, str]:
    """The environment variables the workers get: ``prefixes`` forwarded, NCCL's on GPUs.

    Arguments
    ---------
    environ : Mapping
        The driver's environment.
    use_gpu : bool
        GPU workers also get the driver's ``NCCL_*``/``TORCH_NCCL_*`` variables and
        :data:`NCCL_DEFAULTS` where those leave them unset.
    prefixes : tuple of str
        Other prefixes forwarded to every worker (``SMX_``, ``MLFLOW_``).

    Example
    -------
    >>> env = {"SMX_X": "1", "NCCL_SOCKET_IFNAME": "eth0", "HOME": "/root"}
    >>> worker_env(env, use_gpu=False, prefixes=("SMX_",))
    {'SMX_X': '1'}
    >>> sorted(worker_env(env, use_gpu=True, prefixes=("SMX_",)))
    ['NCCL_DEBUG', 'NCCL_SOCKET_IFNAME', 'SMX_X', 'TORCH_NCCL_ASYNC_ERROR_HANDLING']
    """
    forwarded = prefixes + NCCL_PREFIXES if use_gpu else prefixes
    env = {k: v for k, v in environ.items() if forwarded and k.startswith(forwarded)}
    if use_gpu:
        env = {**NCCL_DEFAULTS, **env}
    return env
