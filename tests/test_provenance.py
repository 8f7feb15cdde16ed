"""The source hash that names training runs: what it covers, what changes it, bad trees."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smx.cli import app
from smx.provenance import (
    TRAINING_SOURCES,
    SourceHashError,
    package_dir,
    source_files,
    source_hash,
    with_source,
)
from smx.train.checkpoint import (
    CheckpointMismatch,
    SourceMismatch,
    read_state,
    write_checkpoint,
)


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A copy of the smx package's training sources, with a cache folder and a data file."""
    copy = tmp_path / "a" / "smx"
    shutil.copytree(package_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "nn" / "__pycache__").mkdir(exist_ok=True)
    (copy / "nn" / "__pycache__" / "base.cpython-311.pyc").write_bytes(b"\0compiled")
    return copy


def test_the_hash_is_the_trees_content_wherever_it_lies(package: Path, tmp_path: Path) -> None:
    assert source_hash(package) == source_hash()
    other = tmp_path / "b" / "smx"
    shutil.copytree(package, other)
    assert source_hash(other) == source_hash(package)
    (package / "nn" / "notes.txt").write_text("not code")  # neither caches nor other files
    (package / "nn" / "__pycache__" / "x.pyc").write_bytes(b"\1")
    assert source_hash(package) == source_hash(other)


@pytest.mark.parametrize("part", ["nn/mixers/summary_mixing.py", "ssl/losses.py", "config.py"])
def test_an_edit_of_code_that_training_runs_changes_the_hash(package: Path, part: str) -> None:
    before = source_hash(package)
    path = package / part
    path.write_text(path.read_text() + "\n# an uncommitted edit\n")
    assert source_hash(package) != before


def test_a_new_or_renamed_module_changes_the_hash(package: Path) -> None:
    before = source_hash(package)
    (package / "nn" / "extra.py").write_text("")
    added = source_hash(package)
    (package / "nn" / "extra.py").rename(package / "nn" / "extra2.py")
    assert len({before, added, source_hash(package)}) == 3


def test_code_that_training_does_not_run_leaves_the_hash(package: Path) -> None:
    before = source_hash(package)
    (package / "report" / "markdown.py").write_text("# another report\n")
    assert source_hash(package) == before


def test_every_module_that_training_imports_is_covered() -> None:
    """Build both objectives and the CTC model, then list the smx modules loaded."""
    script = textwrap.dedent(
        """
        import sys, json
        sys.path.insert(0, "tests")
        import tiny
        from smx.config import Params
        from smx.ssl.objective import build_objective
        from smx.downstream.ctc import build_ctc_model
        import smx.train.loop, smx.train.finetune_loop, smx.data.loader
        ssl = {"wav2vec2": tiny.SSL, "bestrq": {"kind": "bestrq", "codebook_size": 16, "stack_frames": 2}}
        for objective in ssl.values():
            for mixer in (tiny.MODEL["mixer"], {"kind": "mhsa", "heads": 4}):
                model = {**tiny.MODEL, "mixer": mixer}
                params = Params.model_validate({"model": model, "ssl": objective})
                build_objective(params)
                build_ctc_model(params, 5)
        print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()
                                if n.startswith("smx") and getattr(m, "__file__", None))))
        """
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    covered = set(source_files())
    loaded = {Path(f).resolve() for f in __import__("json").loads(out.stdout)}
    logging_only = {package_dir() / "tracking.py", package_dir() / "project.py"}
    assert loaded - covered - logging_only == set()
    assert package_dir() / "nn" / "mixers" / "summary_mixing.py" in loaded


def test_a_tree_that_cannot_be_hashed_is_named(package: Path) -> None:
    (package / "nn" / "broken.py").mkdir()  # a folder where a module should be: unreadable
    with pytest.raises(SourceHashError, match=r"cannot hash the smx source: .*broken\.py"):
        source_hash(package)
    shutil.rmtree(package / "ssl")
    with pytest.raises(SourceHashError, match=r"smx/ssl is missing or holds no Python file"):
        source_files(package, TRAINING_SOURCES)


def test_smx_version_prints_the_hash(package: Path) -> None:
    res = CliRunner().invoke(app, ["version", "--source-hash"])
    assert res.exit_code == 0 and res.stdout.strip() == source_hash()
    res = CliRunner().invoke(app, ["version"])
    assert res.exit_code == 0 and f"source {source_hash()}" in res.stdout


def test_a_checkpoint_of_other_code_is_refused_with_both_hashes(tmp_path: Path) -> None:
    old, new = "a" * 64, "b" * 64
    state = {"config_hash": with_source("cfg", old), "source_hash": old}
    folder = write_checkpoint(tmp_path / "ckpt", 0, {}, state)
    assert read_state(folder, "cfg", old)["source_hash"] == old
    with pytest.raises(SourceMismatch, match=r"other smx code .*aaaaaaaa, this tree bbbbbbbb"):
        read_state(folder, "cfg", new)
    with pytest.raises(CheckpointMismatch, match="another model or ssl config") as info:
        read_state(folder, "other", new)  # config and code differ: the config is named
    assert not isinstance(info.value, SourceMismatch)
