"""Build the images with a manifest label, skip builds whose inputs did not change, list them.

Every image's build context is the repository root, but only the files its Dockerfile needs are
sent: the context tar is assembled here from ``ImageDef.context``. The same paths, hashed, are the
image's *inputs*; with the lock file's hash and the base image's id they form the manifest,
stored as the ``org.modelslot.manifest`` label (JSON) at build time. ``images list`` compares a
built image's manifest with the checkout and calls it STALE when an input differs; a build whose
manifest already matches is skipped (that is what makes "build once per run" safe).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from orchestrator.errors import ImageError
from orchestrator.images import wheelhouse
from orchestrator.images.base import LOCAL_BASE
from orchestrator.progress import Progress, detail, note

MANIFEST_LABEL = "org.modelslot.manifest"
REPO_ROOT = wheelhouse.REPO_ROOT
MANIFEST_SCHEMA = 1


@dataclass(frozen=True)
class ImageDef:
    """One buildable image.

    ``context``: repository paths (files or directories) sent as the build context; the
    wheelhouse is added separately. ``local_base``: the ``BASE_IMAGE`` used when building
    offline; ``None`` keeps the Dockerfile's default (a public image pinned by digest).
    """

    key: str
    tag: str
    dockerfile: str
    lock: str
    context: tuple[str, ...]
    local_base: str | None
    needs: tuple[str, ...] = ()


XPU_SUBSTITUTE_TAG = "modelslot/vllm-xpu-substitute:local"

IMAGES: dict[str, ImageDef] = {
    "cpu": ImageDef(
        key="cpu",
        tag="modelslot/vllm-cpu:local",
        dockerfile="images/vllm-cpu/Dockerfile",
        lock="vllm-cpu",
        context=(
            "images/vllm-cpu/Dockerfile",
            "images/vllm-cpu/make_models.py",
            "images/vllm-cpu/requirements.lock",
            "images/common/entrypoint.py",
            "orchestrator/vllm_argv.py",
        ),
        local_base=LOCAL_BASE,
    ),
    "xpu-substitute": ImageDef(
        key="xpu-substitute",
        tag=XPU_SUBSTITUTE_TAG,
        dockerfile="images/vllm-xpu/substitute.Dockerfile",
        lock="xpu-substitute",
        context=(
            "images/vllm-xpu/substitute.Dockerfile",
            "images/vllm-xpu/substitute.requirements.lock",
        ),
        local_base=LOCAL_BASE,
    ),
    "xpu": ImageDef(
        key="xpu",
        tag="modelslot/vllm-xpu:local",
        dockerfile="images/vllm-xpu/Dockerfile",
        lock="vllm-xpu",
        context=(
            "images/vllm-xpu/Dockerfile",
            "images/vllm-xpu/requirements.lock",
            "images/vllm-xpu/apply_patches.py",
            "images/vllm-xpu/capture_env.py",
            "images/common/entrypoint.py",
            "orchestrator/vllm_argv.py",
            "patches",
        ),
        # Offline, the XPU Dockerfile is built against the substitute base (CI has no XPU).
        local_base=XPU_SUBSTITUTE_TAG,
        needs=("xpu-substitute",),
    ),
    "orchestrator": ImageDef(
        key="orchestrator",
        tag=os.environ.get("MODEL_SLOT_ORCHESTRATOR_IMAGE") or "modelslot/orchestrator:local",
        dockerfile="images/orchestrator/Dockerfile",
        lock="orchestrator",
        context=(
            "images/orchestrator/Dockerfile",
            "images/orchestrator/requirements.lock",
            "images/orchestrator/pyproject.toml",
            "orchestrator",
        ),
        local_base=LOCAL_BASE,
    ),
    "frontdoor": ImageDef(
        key="frontdoor",
        tag=os.environ.get("MODEL_SLOT_FRONTDOOR_IMAGE") or "modelslot/frontdoor:local",
        dockerfile="images/frontdoor/Dockerfile",
        lock="frontdoor",
        context=(
            "images/frontdoor/Dockerfile",
            "images/frontdoor/requirements.lock",
            "images/frontdoor/pyproject.toml",
            "images/frontdoor/frontdoor",
        ),
        local_base=LOCAL_BASE,
    ),
}

BUILD_ORDER = ("frontdoor", "orchestrator", "cpu", "xpu-substitute", "xpu")


def _context_files(image: ImageDef) -> Iterator[Path]:
    for entry in image.context:
        path = REPO_ROOT / entry
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and "__pycache__" not in child.parts:
                    yield child
        elif path.is_file():
            yield path
        else:
            raise ImageError(f"{entry}: build input for {image.key} is missing")


def input_hashes(image: ImageDef) -> dict[str, str]:
    """``{repo path: sha256}`` for every file sent in the context (the wheelhouse excluded)."""
    return {
        str(path.relative_to(REPO_ROOT)): wheelhouse.sha256_file(path)
        for path in _context_files(image)
    }


def git_revision() -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    revision = result.stdout.strip() if result.returncode == 0 else "unknown"
    dirty = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "images", "orchestrator"],
        capture_output=True,
        text=True,
        check=False,
    )
    return revision + ("-dirty" if dirty.stdout.strip() else "")


def image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        found: str = client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None
    return found


def make_manifest(
    image: ImageDef, base_ref: str, base_id: str | None, revision: str
) -> dict[str, Any]:
    inputs = input_hashes(image)
    return {
        "schema": MANIFEST_SCHEMA,
        "image": image.key,
        "base": {"ref": base_ref, "id": base_id},
        "lock": {
            "path": str(wheelhouse.lock_path(image.lock).relative_to(REPO_ROOT)),
            "sha256": wheelhouse.sha256_file(wheelhouse.lock_path(image.lock)),
        },
        "inputs": inputs,
        "inputs_sha256": digest_of(inputs),
        "git_revision": revision,
    }


def digest_of(inputs: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(inputs.items()))).encode()).hexdigest()


def stale_reasons(built: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between a built image's manifest and the checkout; empty when up to date.

    The git revision is informative only: a commit that touches none of the inputs does not
    make an image stale.
    """
    reasons: list[str] = []
    if built.get("schema") != current.get("schema"):
        return ["manifest schema changed"]
    if built.get("lock", {}).get("sha256") != current["lock"]["sha256"]:
        reasons.append(f"lock {current['lock']['path']} changed")
    if built.get("base", {}).get("ref") != current["base"]["ref"]:
        reasons.append(f"base is now {current['base']['ref']}")
    elif (
        current["base"]["id"] is not None
        and built.get("base", {}).get("id") != (current["base"]["id"])
    ):
        reasons.append(f"base {current['base']['ref']} was rebuilt")
    old_inputs: Mapping[str, str] = built.get("inputs", {})
    new_inputs: Mapping[str, str] = current["inputs"]
    for path in sorted(set(old_inputs) | set(new_inputs)):
        if old_inputs.get(path) != new_inputs.get(path):
            reasons.append(f"{path} changed")
    return reasons


def read_manifest(client: docker.DockerClient, tag: str) -> tuple[dict[str, Any], str] | None:
    """The manifest label of ``tag`` and its creation time, or ``None`` when not built."""
    try:
        found = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    labels = found.attrs.get("Config", {}).get("Labels") or {}
    raw = labels.get(MANIFEST_LABEL)
    created = str(found.attrs.get("Created", ""))[:19]
    if raw is None:
        return {}, created
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError:
        return {}, created
    return (manifest if isinstance(manifest, dict) else {}), created


def _base_ref(image: ImageDef, offline: bool, dockerfile_default: str | None) -> str | None:
    if offline and image.local_base is not None:
        return image.local_base
    return dockerfile_default


def dockerfile_base_default(image: ImageDef) -> str | None:
    """The ``ARG BASE_IMAGE=...`` default written in the Dockerfile."""
    for line in (REPO_ROOT / image.dockerfile).read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("ARG BASE_IMAGE="):
            return stripped.split("=", 1)[1].strip()
    return None


def _write_context(image: ImageDef, handle: Any) -> None:
    with tarfile.open(fileobj=handle, mode="w") as tar:
        for path in _context_files(image):
            tar.add(path, arcname=str(path.relative_to(REPO_ROOT)), recursive=False)
        house = wheelhouse.wheelhouse_path(image.lock)
        arc_house = str(house.relative_to(REPO_ROOT))
        tar.add(house, arcname=arc_house, recursive=False)
        for wheel in sorted(house.iterdir()):
            tar.add(wheel, arcname=f"{arc_house}/{wheel.name}", recursive=False)


@dataclass(frozen=True)
class BuildResult:
    key: str
    tag: str
    skipped: bool
    seconds: float
    size_bytes: int


def build_one(
    client: docker.DockerClient,
    image: ImageDef,
    progress: Progress,
    *,
    offline: bool = True,
    no_cache: bool = False,
    extra_tags: Sequence[str] = (),
    tag: str | None = None,
) -> BuildResult:
    """Build ``image`` unless its current manifest already matches; return what happened."""
    started = time.monotonic()
    target_tag = tag or image.tag
    base_ref = _base_ref(image, offline, dockerfile_base_default(image))
    if base_ref is None:
        raise ImageError(f"{image.dockerfile}: no ARG BASE_IMAGE default")
    progress(note(f"{image.key}: wheelhouse from {wheelhouse.lock_path(image.lock).name}"))
    wheelhouse.fetch(image.lock, progress)
    base_id = image_id(client, base_ref)
    if base_id is None and not offline:
        progress(note(f"{image.key}: pulling {base_ref}"))
        try:
            client.images.pull(base_ref)
        except docker.errors.APIError as exc:
            raise ImageError(
                f"cannot pull {base_ref} ({exc.explanation or exc}); "
                "without a registry, build offline (drop --public-bases)"
            ) from None
        base_id = image_id(client, base_ref)
    if base_id is None:
        raise ImageError(f"base {base_ref} is not present; `images base` builds the local one")
    current = make_manifest(image, base_ref, base_id, git_revision())
    existing = read_manifest(client, target_tag)
    if existing is not None and not no_cache and not stale_reasons(existing[0], current):
        progress(note(f"{image.key}: {target_tag} is up to date (built {existing[1]}), skipped"))
        found = client.images.get(target_tag)
        return BuildResult(image.key, target_tag, True, 0.0, int(found.attrs.get("Size", 0)))
    progress(note(f"{image.key}: building {target_tag} FROM {base_ref}"))
    with tempfile.TemporaryFile(prefix="model-slot-context-") as context:
        _write_context(image, context)
        context.seek(0)
        log_tail: list[str] = []
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            dockerfile=image.dockerfile,
            tag=target_tag,
            buildargs={"BASE_IMAGE": base_ref},
            labels={MANIFEST_LABEL: json.dumps(current, sort_keys=True)},
            nocache=no_cache,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                tail = "\n".join(log_tail[-30:])
                raise ImageError(f"{image.key}: docker build failed: {chunk['error']}\n{tail}")
            text = str(chunk.get("stream", "")).rstrip()
            if not text:
                continue
            log_tail.append(text)
            if text.startswith("Step "):
                progress(note(f"{image.key}: {text}"))
            else:
                progress(detail(text))
    built = client.images.get(target_tag)
    for extra in extra_tags:
        repository, _, version = extra.rpartition(":")
        built.tag(repository, version)
    seconds = time.monotonic() - started
    size = int(built.attrs.get("Size", 0))
    progress(note(f"{image.key}: built {target_tag} in {seconds:.0f}s, {size / 2**30:.2f} GiB"))
    return BuildResult(image.key, target_tag, False, seconds, size)


def build(
    client: docker.DockerClient,
    keys: Sequence[str],
    progress: Progress,
    *,
    offline: bool = True,
    no_cache: bool = False,
) -> list[BuildResult]:
    """Build ``keys`` in dependency order (the XPU image needs its substitute base offline)."""
    wanted: list[str] = []
    for key in keys:
        if offline:
            for need in IMAGES[key].needs:
                if need not in wanted:
                    wanted.append(need)
        if key not in wanted:
            wanted.append(key)
    ordered = [key for key in BUILD_ORDER if key in wanted]
    return [
        build_one(client, IMAGES[key], progress, offline=offline, no_cache=no_cache)
        for key in ordered
    ]


@dataclass(frozen=True)
class ImageStatus:
    key: str
    tag: str
    built: bool
    created: str
    git_revision: str
    stale: list[str]


def status(client: docker.DockerClient, offline: bool = True) -> list[ImageStatus]:
    rows: list[ImageStatus] = []
    for key in BUILD_ORDER:
        image = IMAGES[key]
        found = read_manifest(client, image.tag)
        if found is None:
            rows.append(ImageStatus(key, image.tag, False, "-", "-", []))
            continue
        manifest, created = found
        base_ref = _base_ref(image, offline, dockerfile_base_default(image)) or "-"
        try:
            current = make_manifest(image, base_ref, image_id(client, base_ref), "")
        except ImageError as exc:
            rows.append(ImageStatus(key, image.tag, True, created, "-", [str(exc)]))
            continue
        reasons = stale_reasons(manifest, current) if manifest else ["no manifest label"]
        rows.append(
            ImageStatus(
                key, image.tag, True, created, str(manifest.get("git_revision", "-")), reasons
            )
        )
    return rows
