"""``smx bench gpu`` and ``scripts/gpu_check.sh``: the GPU path, run on the CPU with ``--quick``.

The quick run goes through the real script with only what a bare GPU machine has: an import
hook refuses every module outside the standard library, torch (and what it requires), the
carried wheels (scripts/gpu_wheels.txt) and smx.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch
from packaging.requirements import Requirement

from smx.bench import gpu, gpu_points, gpu_report, gpu_wheels
from smx.bench.gpu_checks import _master_weights, bf16_autocast

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
PINS = ROOT / "scripts" / "gpu_wheels.txt"
#: What the bare GPU machine lacks and the GPU path must not import.
FORBIDDEN = ("lhotse", "ray", "mlflow", "dvc", "typer", "rich", "matplotlib")

BLOCKER = '''
import importlib.abc, json, os, sys

ALLOWED = set(json.loads(os.environ["SMX_TEST_ALLOWED"]))


class BareMachine(importlib.abc.MetaPathFinder):
    """The interpreter's finders, except that modules outside ALLOWED are not installed."""

    def __init__(self, finders):
        self.finders = finders

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        allowed = top in ALLOWED or top in sys.stdlib_module_names or top.startswith("_")
        for finder in self.finders:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and not allowed:
                with open(os.environ["SMX_TEST_BLOCKED"], "a") as fh:
                    fh.write(name + "\\n")
                return None
            if spec is not None:
                return spec
        return None

    def find_distributions(self, *args, **kwargs):  # installed metadata, e.g. entry points
        for finder in self.finders:
            if hasattr(finder, "find_distributions"):
                yield from finder.find_distributions(*args, **kwargs)

    def invalidate_caches(self):
        for finder in self.finders:
            if hasattr(finder, "invalidate_caches"):
                finder.invalidate_caches()


sys.meta_path[:] = [BareMachine(list(sys.meta_path))]
'''


def _name(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


@cache
def allowed_modules() -> list[str]:
    """Top-level modules of torch's requirements (recursively), the carried wheels and smx."""
    todo = ["torch", *(name for name, _ in gpu_wheels.read_pins(PINS))]
    dists: set[str] = set()
    while todo:
        dist = _name(todo.pop())
        if dist in dists:
            continue
        dists.add(dist)
        try:
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    owners = metadata.packages_distributions()
    tops = {top for top, names in owners.items() if any(_name(d) in dists for d in names)}
    return sorted(tops | {"smx"})


def run_script(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
        cwd=tmp_path,
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `scripts/gpu_check.sh --device cpu --quick` on a simulated bare machine."""
    tmp = tmp_path_factory.mktemp("gpu")
    (tmp / "hook").mkdir()
    (tmp / "hook" / "sitecustomize.py").write_text(BLOCKER)
    docs = tmp / "benchmarks.md"
    docs.write_text("# B\n<!-- begin: bench-gpu -->\nold\n<!-- end: bench-gpu -->\nkept\n")
    env = {
        "SMX_GPU_WHEELS": "none",
        "PYTHONPATH": str(tmp / "hook"),
        "SMX_TEST_ALLOWED": json.dumps(allowed_modules()),
        "SMX_TEST_BLOCKED": str(tmp / "blocked.txt"),
        "OMP_NUM_THREADS": "1",
    }
    args = ("--device", "cpu", "--quick", "--out", str(tmp / "out"), "--docs", str(docs))
    res = run_script(tmp, *args, env=env)
    blocked = (tmp / "blocked.txt").read_text().split() if (tmp / "blocked.txt").exists() else []
    return {"res": res, "out": tmp / "out", "docs": docs, "blocked": blocked}


def test_the_quick_cpu_run_passes_with_only_torch_and_the_carried_wheels(quick_run) -> None:
    res = quick_run["res"]
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert not any(b.split(".")[0] in FORBIDDEN for b in quick_run["blocked"])
    for line in res.stderr.splitlines():
        assert not line.startswith("check ") or ": ok (" in line, line
    assert re.search(r"^\[17/17\] w2v2_summarymixing compiled 0.5 s x 4: ", res.stderr, re.M)
    assert f"wrote {quick_run['out'] / 'gpu.json'}" in res.stdout


def test_the_run_writes_json_and_markdown_with_one_row_per_point(quick_run) -> None:
    out = quick_run["out"]
    assert sorted(p.name for p in out.iterdir()) == ["gpu-worker.log", "gpu.json", "gpu.md"]
    data = json.loads((out / "gpu.json").read_text())
    records = data["records"]
    assert len(records) == 8 * 2 + 1  # every variant at 0.5 and 1 s, one compiled at 0.5 s
    assert {c["status"] for c in data["checks"]} == {"ok"} and len(data["checks"]) == 11
    for rec in records:
        assert rec["median_s"] > 0 and rec["loss_finite"] and rec["peak_mem_bytes"] is None
        assert rec["batch"] == int(2.0 // rec["seconds"])  # 2 s of audio per step
    md = (out / "gpu.md").read_text()
    assert md == gpu_report.render(data)
    rows = [ln for ln in md.splitlines() if ln.startswith("| w2v2_") or ln.startswith("| bestrq_")]
    assert len(rows) == len(records)
    relpos = next(r for r in rows if r.startswith("| w2v2_mhsa_relpos | eager | 0.5 | 4 |"))
    cells = [c.strip() for c in relpos.strip("|").split("|")]
    assert cells[6:] == ["n/a", "1.00", "", ""]  # peak, time ratio to itself, no memory ratio
    block = quick_run["docs"].read_text()
    assert block.endswith("<!-- end: bench-gpu -->\nkept\n") and "| w2v2_mhsa_sdpa |" in block


def test_cuda_requested_without_a_gpu_is_one_line_and_exit_2(capsys, tmp_path) -> None:
    assert not torch.cuda.is_available()
    assert gpu.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sees no CUDA device" in err[0] and "--device cpu --quick" in err[0]
    assert not list(tmp_path.iterdir())


def test_bad_arguments_are_one_sentence(capsys) -> None:
    assert gpu.main(["--device", "cpu", "--variants", "w2v2_lstm"]) == 2
    assert capsys.readouterr().err.startswith("smx bench gpu: --variants: unknown variant(s)")
    assert gpu.main(["--device", "cpu", "--lengths", "20,0"]) == 2


def test_an_out_of_memory_point_is_marked_and_the_next_one_runs() -> None:
    bench = gpu.parse(
        [
            *("--device", "cpu", "--quick", "--lengths", "1,3000"),
            *("--variants", "w2v2_summarymixing", "--compile", "none", "--max-memory-gib", "0.5"),
        ]
    )
    (small, small_spec), (big, big_spec) = gpu.plan(bench)
    oom, go_on = gpu_points.run_point(big_spec)
    assert go_on and oom["oom"].startswith("DefaultCPUAllocator: can't allocate memory")
    fine, _ = gpu_points.run_point(small_spec)  # the process is still usable
    assert fine["median_s"] > 0
    assert gpu_points.not_run({**oom, "seconds": 3000.0}, {"seconds": 6000.0}) == (
        "not run: out of memory at 3000 s"
    )
    records = [{**small, **fine}, {**big, **oom}]
    row = gpu_report.point_rows(records)[1]
    assert row[:4] == ["w2v2_summarymixing", "eager", "3000", "1"]
    assert row[-1].startswith("out of memory: DefaultCPUAllocator")


def test_points_left_when_the_budget_is_spent_are_marked(tmp_path) -> None:
    bench = gpu.parse(["--device", "cpu", "--quick", "--variants", "bestrq_fastformer"])
    points = gpu.plan(bench)
    lines: list[str] = []
    with open(tmp_path / "log", "w") as log:
        records = gpu.run_points(points, 0.05, log, lines.append)
    assert [r["id"] for r in records] == [r["id"] for r, _ in points]
    assert all(r["skipped"] == "not run: the time budget of 0.05 s was spent" for r in records)


def test_claims_compare_with_relpos_mhsa_at_the_same_batch() -> None:
    def rec(variant: str, seconds: float, t: float, mem: int, batch: int = 4) -> dict:
        return {"variant": variant, "objective": "wav2vec2", "mode": "eager", "seconds": seconds,
                "batch": batch, "median_s": t, "peak_mem_bytes": mem}  # fmt: skip

    records = [
        rec("w2v2_summarymixing", 20, 0.8, 70),
        rec("w2v2_mhsa_relpos", 20, 1.0, 100),
        rec("w2v2_mhsa_sdpa", 20, 0.7, 60),
        rec("w2v2_summarymixing", 80, 3.6, 45, batch=1),
        rec("w2v2_mhsa_relpos", 80, 8.0, 100, batch=1),
        rec("w2v2_mhsa_sdpa", 80, 4.0, 50, batch=1),
    ]
    rows = {r[1]: r[2:] for r in gpu_report.claim_rows(records, [20.0, 80.0])}
    assert rows["SummaryMixing time / relpos MHSA at 20 s"] == ["0.80", "0.82", "met"]
    assert rows["SummaryMixing memory / relpos MHSA at 20 s"] == ["0.70", "0.77", "met"]
    assert rows["SummaryMixing time / relpos MHSA at 80 s"] == ["0.45", "0.50", "met"]
    assert rows["SummaryMixing time / SDPA MHSA at 20 s"] == ["1.14", "", "reported"]
    # per utterance: 3.6 s for one 80 s utterance against 0.2 s for a 20 s one
    assert rows["SummaryMixing time per utterance, 80 s / 20 s"] == ["18.00", "4.4", "NOT met"]
    assert gpu_report.stops_paying(records, [20.0, 80.0]) == (
        "SummaryMixing does not pay against SDPA MHSA at 20 s (time and memory)."
    )


def test_bf16_keeps_float32_master_weights_and_stays_close_to_float32() -> None:
    assert "gradient cosine" in bf16_autocast("w2v2_summarymixing", torch.device("cpu"))
    model = torch.nn.Linear(2, 2).to(torch.bfloat16)
    with pytest.raises(AssertionError, match=r"not float32: weight \(torch.bfloat16\)"):
        _master_weights(model, None, torch.zeros(()))


# ----------------------------------------------------------------------------- the wheels


def _fake_wheels(folder: Path, tag: str) -> None:
    folder.mkdir()
    for name, version in gpu_wheels.read_pins(PINS):
        prefix = gpu_wheels.wheel_prefix(name, version)
        module = prefix.split("-")[0]
        with zipfile.ZipFile(folder / f"{prefix}{tag}-{tag}-any.whl", "w") as whl:
            whl.writestr(f"fake_{module}/__init__.py", f"NAME = {name!r}\n")


def test_the_install_step_unpacks_every_pinned_wheel(tmp_path: Path) -> None:
    _fake_wheels(tmp_path / "wheels", gpu_wheels.python_tag())
    site = tmp_path / "site"
    assert gpu_wheels.main([str(tmp_path / "wheels"), str(site), str(PINS)]) == 0
    names = {p.name for p in site.iterdir()}
    assert "fake_pydantic_core" in names and "fake_torchaudio" in names
    assert len(names) == len(gpu_wheels.read_pins(PINS))


def test_missing_or_foreign_wheels_are_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert gpu_wheels.main([str(tmp_path / "none"), str(tmp_path / "site")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    _fake_wheels(tmp_path / "other", "cp39")
    assert gpu_wheels.main([str(tmp_path / "other"), str(tmp_path / "site"), str(PINS)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pydantic_core==2.50.4 (only pydantic_core-2.50.4-cp39" in err
    assert "scripts/fetch_gpu_wheels.sh 3." in err and not (tmp_path / "site").exists()


def test_the_script_says_in_one_line_that_the_wheels_are_missing(tmp_path: Path) -> None:
    res = run_script(tmp_path, "--device", "cpu", env={"SMX_GPU_WHEELS": str(tmp_path / "no")})
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == (
        f"scripts/gpu_check.sh: the wheels folder {tmp_path / 'no'} does not exist: run "
        f"scripts/fetch_gpu_wheels.sh {sys.version_info.major}.{sys.version_info.minor} where a "
        "package index is reachable, then carry the folder\n"
    )


def test_the_carried_wheels_are_the_locked_versions_and_ignored() -> None:
    locked = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            locked[_name(name)] = version.strip()
    pins = gpu_wheels.read_pins(PINS)
    for name, version in pins:
        if _name(name) in locked:
            assert locked[_name(name)] == version, name
    assert {_name(n) for n, _ in pins} >= {"pydantic", "ruamel-yaml", "torchaudio", "nvidia-ml-py"}
    ignored = subprocess.run(
        ["git", "check-ignore", "wheels/gpu/x.whl", "wheels/site/x.py"],
        cwd=ROOT,
        capture_output=True,
    )
    assert ignored.returncode == 0


def test_smx_bench_gpu_passes_its_arguments_to_the_plain_entry_point() -> None:
    from typer.testing import CliRunner

    from smx.bench.cli import bench_app

    res = CliRunner().invoke(bench_app, ["gpu", "--device", "cuda", "--quick"])
    assert res.exit_code == 2
    assert "smx bench gpu: --device cuda: torch" in res.output
    helped = CliRunner().invoke(bench_app, ["gpu", "--help"])
    assert helped.exit_code == 0 and "--max-memory-gib" in helped.output


def test_the_benchmarks_page_has_the_block_the_gpu_run_rewrites() -> None:
    from smx.docblock import check_block

    check_block(ROOT / "docs" / "benchmarks.md", "bench-gpu")
    assert "scripts/gpu_check.sh --out reports/bench/gpu --docs docs/benchmarks.md" in (
        (ROOT / "docs" / "benchmarks.md").read_text()
    )
