"""The embedded corpus carries speaker identity: the fbank baseline learns the speaker task.

The demo's corpus (``params.yaml``'s ``data.synth``: 0.6 h, 30 speakers, 8 held out) is
synthesised, and an x-vector probe on log-mel features, trained as the demo trains it, is
scored on the held-out speakers' verification trials. Its equal error rate must be far
from chance (0.5): the speakers' accent, voice variant and vocal-tract scale survive every
speaking style and noise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smx.config import Params, load
from smx.data.synth import prepare_synth
from smx.downstream.run import probe_baseline

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_an_fbank_xvector_probe_tells_held_out_speakers_apart(tmp_path: Path) -> None:
    demo = load(ROOT / "params.yaml").model_dump()
    demo["downstream"]["seeds"] = 1
    demo["downstream"]["workers"] = 1
    params = Params.model_validate(demo)
    corpus = tmp_path / "synth"
    summary = prepare_synth(corpus, params.data).summary
    assert summary["splits"]["heldout"]["speakers"] == params.data.synth.heldout_speakers
    train_speakers = params.data.synth.num_speakers - params.data.synth.heldout_speakers
    assert summary["splits"]["train"]["utterances"] >= 15 * train_speakers

    result = probe_baseline("speaker", params, corpus, probes=["xvector"])
    assert result["chance"] == 0.5 and result["trials"] > 5000
    eer = result["probes"]["xvector"]["fbank"]["metrics"]["eer"]["mean"]
    assert eer < 0.3, f"fbank x-vector EER {eer:.3f} on the held-out speakers"
