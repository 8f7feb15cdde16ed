"""The error users see when probing cannot run (bad encoder, missing labels, empty split)."""

from __future__ import annotations


class ProbeError(ValueError):
    """A user-facing problem with the probing input: one sentence, no traceback.

    Example
    -------
    >>> str(ProbeError("task 'intent' needs intent labels"))
    "task 'intent' needs intent labels"
    """
