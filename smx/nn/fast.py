"""The training fast path: compiled encoder blocks, with an eager fallback.

:func:`compile_blocks` compiles the ``forward`` of every block of an
:class:`~smx.nn.encoder.Encoder` with :func:`torch.compile` (regional compilation). The
blocks are identical modules, so they share one compiled graph per input shape and mode:
compiling costs about one layer, not the stack. Only the offline ``forward`` is compiled;
the chunked and streaming methods stay eager. Inductor runs with ``fallback_random`` so
that dropout draws the same random numbers as in eager mode: outputs and gradients equal
the eager ones up to float rounding (fused kernels sum in another order).

Where compilation is unavailable (no C++ compiler, an unsupported Python, a backend that
fails), the blocks fall back to eager mode with one warning that names the setting that
turns compilation off. :func:`compile_seconds` is the time torch has spent compiling in this
process, which the training loop leaves out of its step time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

#: Inductor options of the compiled blocks: dropout uses eager's random numbers (exact).
INDUCTOR_OPTIONS = {"fallback_random": True}

CompileSetting = bool | Literal["auto"]


def wants_compile(setting: CompileSetting, device: torch.device) -> bool:
    """Whether ``train.compile`` compiles on ``device``: ``auto`` compiles on CUDA only.

    Example
    -------
    >>> wants_compile("auto", torch.device("cpu")), wants_compile(True, torch.device("cpu"))
    (False, True)
    """
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)


class _Fallback:
    """Shared by the blocks of one encoder: warn once, then run every block eagerly."""

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self.failed = False

    def fail(self, exc: BaseException) -> None:
        if not self.failed:
            cause = getattr(exc, "inner_exception", None) or exc.__cause__ or exc
            first = (str(cause).strip().splitlines() or [""])[0]
            warnings.warn(
                f"torch.compile is unavailable here ({type(cause).__name__}: {first[:200]}); "
                f"the encoder blocks run eagerly. Set {self.setting}: false to skip compiling.",
                RuntimeWarning,
                stacklevel=3,
            )
        self.failed = True


class _CompiledForward:
    """A block's ``forward`` through ``torch.compile``; eager once compilation has failed."""

    def __init__(self, eager: Callable[..., Any], compiled: Callable[..., Any], state: _Fallback):
        self.eager, self.compiled, self.state = eager, compiled, state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.state.failed:
            try:
                return self.compiled(*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException as exc:  # compiler, not model, errors
                self.state.fail(exc)
        return self.eager(*args, **kwargs)


def compile_blocks(
    encoder: nn.Module,
    backend: str | Callable[..., Any] = "inductor",
    setting: str = "train.compile",
) -> bool:
    """Compile the ``forward`` of every block of ``encoder`` in place; False if unavailable.

    Arguments
    ---------
    encoder : nn.Module
        Has ``blocks`` (an :class:`~smx.nn.encoder.Encoder`).
    backend : str or callable
        The :func:`torch.compile` backend (tests pass one that raises).
    setting : str
        The config setting named by the fallback warning.

    Returns
    -------
    bool
        True when the blocks were set up to compile (a failure at the first call still
        falls back to eager with the warning), False when ``torch.compile`` refused at once.

    Example
    -------
    >>> from smx.nn.blocks import TransformerBlock
    >>> from smx.nn.mixers.no_mixing import NoMixing
    >>> enc = nn.Module(); enc.blocks = nn.ModuleList([TransformerBlock(8, NoMixing(8), 16)])
    >>> def broken(gm, inputs): raise RuntimeError("no compiler")
    >>> compile_blocks(enc, backend=broken)
    True
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     y = enc.blocks[0](torch.randn(1, 3, 8), torch.ones(1, 3, dtype=torch.bool))
    >>> len(caught), "train.compile: false" in str(caught[0].message), y.shape
    (1, True, torch.Size([1, 3, 8]))
    """
    state = _Fallback(setting)
    options = INDUCTOR_OPTIONS if backend == "inductor" else None
    for block in encoder.blocks:
        eager = block.forward
        try:
            compiled = torch.compile(eager, backend=backend, options=options)
        except (RuntimeError, torch._dynamo.exc.TorchDynamoException) as exc:
            state.fail(exc)
            return False
        block.forward = _CompiledForward(eager, compiled, state)
    return True


def encoders(model: nn.Module) -> list[nn.Module]:
    """The :class:`~smx.nn.encoder.Encoder` modules inside ``model`` (itself included)."""
    from smx.nn.encoder import Encoder

    return [m for m in model.modules() if isinstance(m, Encoder)]


def apply_fast_path(model: nn.Module, setting: CompileSetting, device: torch.device) -> bool:
    """Compile the encoder blocks of ``model`` when ``train.compile`` asks for it on ``device``.

    Recomputation needs nothing here: it is a setting of the SummaryMixing cell
    (``model.mixer.recompute``), built into the model. Returns whether blocks were compiled.
    """
    if not wants_compile(setting, device):
        return False
    return all([compile_blocks(encoder) for encoder in encoders(model)])


def compile_seconds() -> float:
    """Seconds torch has spent compiling (forward and backward graphs) in this process."""
    try:
        from torch._dynamo.utils import calculate_time_spent

        return float(calculate_time_spent().get("total_wall_time", 0.0))
    except (ImportError, AttributeError):  # another torch: the step time then includes it
        return 0.0
