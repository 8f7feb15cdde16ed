"""Install the wheels ``scripts/gpu_check.sh`` carries onto a bare GPU machine.

The machine has Python and torch with CUDA and nothing else of the project, and no network.
The wheels listed in ``scripts/gpu_wheels.txt`` (downloaded by
``scripts/fetch_gpu_wheels.sh`` into ``wheels/gpu/``) are unpacked into one folder that goes
first on ``PYTHONPATH``: no pip, no index, no change to the machine's own packages (torch is
never touched). This module needs only the standard library: it runs before anything else
is importable.

    python -m smx.bench.gpu_wheels wheels/gpu wheels/site

A missing folder, a missing wheel or a wheel for another Python is one sentence on stderr
and exit status 2.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

#: The pinned list of carried wheels, relative to the project root.
PINS = Path("scripts/gpu_wheels.txt")
EXIT_USER = 2


class WheelsError(ValueError):
    """The wheels folder cannot provide the pinned packages; the message says what to do."""


def read_pins(path: Path) -> list[tuple[str, str]]:
    """``(name, version)`` of every ``name==version`` line of ``path`` (comments skipped).

    Example
    -------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "pins.txt"
    >>> _ = f.write_text("# c\\npydantic==2.14.3\\n\\nruamel.yaml==0.19.1\\n")
    >>> read_pins(f)
    [('pydantic', '2.14.3'), ('ruamel.yaml', '0.19.1')]
    """
    pins = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins.append((name.strip(), version.strip()))
    return pins


def wheel_prefix(name: str, version: str) -> str:
    """The start of the wheel file name of ``name==version`` (PEP 427 escaping).

    Example
    -------
    >>> wheel_prefix("ruamel.yaml", "0.19.1"), wheel_prefix("typing-inspection", "0.4.5")
    ('ruamel_yaml-0.19.1-', 'typing_inspection-0.4.5-')
    """
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def python_tag() -> str:
    """This interpreter's wheel tag, e.g. ``cp312``."""
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def fits(wheel: str, tag: str) -> bool:
    """Whether the wheel file ``wheel`` installs on CPython ``tag`` (pure, or built for it).

    Example
    -------
    >>> fits("pydantic-2.14.3-py3-none-any.whl", "cp312")
    True
    >>> fits("pydantic_core-2.50.4-cp312-cp312-manylinux2014_x86_64.whl", "cp311")
    False
    """
    python = wheel.removesuffix(".whl").split("-")[-3]
    return any(t == tag or t.startswith("py3") for t in python.split("."))


def find_wheels(folder: Path, pins: list[tuple[str, str]]) -> list[Path]:
    """The wheel of every pin in ``folder``; :class:`WheelsError` names what is missing."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    fetch = (
        f"run scripts/fetch_gpu_wheels.sh {version} where a package index is reachable, "
        "then carry the folder"
    )
    if not folder.is_dir():
        raise WheelsError(f"the wheels folder {folder} does not exist: {fetch}")
    files = sorted(p.name for p in folder.glob("*.whl"))
    found, missing = [], []
    for name, version in pins:
        prefix = wheel_prefix(name, version)
        candidates = [f for f in files if f.lower().startswith(prefix)]
        usable = [f for f in candidates if fits(f, python_tag())]
        if usable:
            found.append(folder / usable[0])
        else:
            other = f" (only {candidates[0]})" if candidates else ""
            missing.append(f"{name}=={version}{other}")
    if missing:
        raise WheelsError(
            f"{folder} has no wheel for Python {version} of {', '.join(missing)}: {fetch}"
        )
    return found


def installed_name(member: str) -> str | None:
    """Where a wheel's file goes in the site folder; None for scripts, headers and data.

    Example
    -------
    >>> installed_name("numpy/__init__.py"), installed_name("np-2.data/platlib/x.so")
    ('numpy/__init__.py', 'x.so')
    >>> print(installed_name("numpy-2.4.6.data/scripts/f2py"))
    None
    """
    top, _, rest = member.partition("/")
    if not top.endswith(".data"):
        return member
    scheme, _, path = rest.partition("/")
    return path if scheme in ("purelib", "platlib") and path else None


def _extract(wheel: Path, site: Path) -> None:
    """Unpack one wheel's library files into ``site`` (the executable bits kept)."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            name = installed_name(info.filename)
            if name is None or info.is_dir():
                continue
            target = site / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            mode = info.external_attr >> 16
            if mode:
                target.chmod(mode & 0o777)


def unpack(wheels: list[Path], site: Path) -> None:
    """Unpack ``wheels`` into a fresh ``site`` folder (replaced as a whole when complete)."""
    site.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{site.name}-", dir=site.parent))
    try:
        for wheel in wheels:
            _extract(wheel, staging)
        if site.exists():
            shutil.rmtree(site)
        staging.rename(site)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m smx.bench.gpu_wheels WHEELS SITE [PINS]``: unpack the pinned wheels."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print("usage: python -m smx.bench.gpu_wheels WHEELS SITE [PINS]", file=sys.stderr)
        return EXIT_USER
    folder, site = Path(args[0]), Path(args[1])
    pins = Path(args[2]) if len(args) == 3 else PINS
    try:
        wheels = find_wheels(folder, read_pins(pins))
        unpack(wheels, site)
    except (WheelsError, OSError, zipfile.BadZipFile) as exc:
        print(f"scripts/gpu_check.sh: {exc}", file=sys.stderr)
        return EXIT_USER
    print(f"installed {len(wheels)} wheels from {folder} into {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
