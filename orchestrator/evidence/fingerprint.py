"""What produced a result: the image, vLLM, the patches, the host kernel, the XPU driver.

A number means little without what it was measured on. ``collect`` reads it from the slot's
model container (Docker's inspect: its image ID, the image's repo digests and its build
manifest label), from vLLM itself (``GET /version`` of the endpoint), from the host (the kernel
is the host's, also inside a container) and, for XPU profiles, from ``xpu-smi`` or sysfs.

Every part says where it came from, and a part that cannot be known says why instead of being
left out: a CPU profile gets ``xpu.note`` "CPU profile: no XPU devices", a locally built image
gets ``image.digest_note`` "built locally, never pushed: no registry digest".
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx

from orchestrator.profiles.store import Profile

MANIFEST_LABEL = "org.modelslot.manifest"
SYSFS_DRM = Path("/sys/class/drm")


def image_part(image_attrs: dict[str, Any] | None, ref: str) -> dict[str, Any]:
    """ID, digests and build inputs of one image, from ``docker image inspect``."""
    if image_attrs is None:
        return {"ref": ref, "id": None, "note": f"image {ref} not found on this engine"}
    labels = (image_attrs.get("Config") or {}).get("Labels") or {}
    digests = list(image_attrs.get("RepoDigests") or [])
    part: dict[str, Any] = {"ref": ref, "id": image_attrs.get("Id"), "digests": digests}
    if not digests:
        part["digest_note"] = "built locally, never pushed: no registry digest"
    manifest: dict[str, Any] = {}
    try:
        manifest = json.loads(labels.get(MANIFEST_LABEL) or "{}")
    except ValueError:
        part["manifest_note"] = f"{MANIFEST_LABEL} is not JSON"
    if manifest:
        part["inputs_sha256"] = manifest.get("inputs_sha256")
        part["git_revision"] = manifest.get("git_revision")
        part["base"] = manifest.get("base")
        part["lock_sha256"] = (manifest.get("lock") or {}).get("sha256")
    return part


def patches_part(image_attrs: dict[str, Any] | None) -> dict[str, Any]:
    """The ``patches/*.patch`` the image applied (its build fails if one does not apply)."""
    labels = ((image_attrs or {}).get("Config") or {}).get("Labels") or {}
    try:
        inputs = json.loads(labels.get(MANIFEST_LABEL) or "{}").get("inputs") or {}
    except ValueError:
        inputs = {}
    applied = [
        {"name": name.rsplit("/", 1)[1], "sha256": digest}
        for name, digest in sorted(inputs.items())
        if name.startswith("patches/") and name.endswith(".patch")
    ]
    out: dict[str, Any] = {"applied": applied}
    if not labels.get(MANIFEST_LABEL):
        out["note"] = "the image has no build manifest: patches unknown"
    elif not applied:
        out["note"] = "the image's build applied no patches"
    return out


def vllm_part(base_url: str | None, client: httpx.Client | None = None) -> dict[str, Any]:
    """vLLM's own answer to ``GET /version``."""
    if not base_url:
        return {"version": None, "note": "no endpoint to ask"}
    url = base_url.rstrip("/") + "/version"
    try:
        response = (client or httpx).get(url, timeout=10)
        version = response.json().get("version") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return {"version": None, "source": url, "note": f"{type(exc).__name__}: {exc}"}
    if not version:
        return {"version": None, "source": url, "note": f"HTTP {response.status_code}"}
    return {"version": str(version), "source": url}


def host_part() -> dict[str, Any]:
    uname = platform.uname()
    return {"kernel": uname.release, "kernel_version": uname.version, "machine": uname.machine}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def xpu_part(devices: tuple[str, ...], sysfs: Path = SYSFS_DRM) -> dict[str, Any]:
    """Driver and firmware of the GPUs, from ``xpu-smi`` when installed, else sysfs."""
    if not devices:
        return {
            "source": None,
            "devices": [],
            "note": "CPU profile: no XPU devices, nothing to read",
        }
    smi = shutil.which("xpu-smi")
    if smi is not None:
        try:
            done = subprocess.run(
                [smi, "discovery", "-j"], capture_output=True, text=True, timeout=30, check=False
            )
            if done.returncode == 0:
                return {"source": "xpu-smi discovery -j", "devices": _smi(json.loads(done.stdout))}
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    cards = []
    for card in sorted(sysfs.glob("card[0-9]*")):
        device = card / "device"
        if "-" in card.name or not device.exists():
            continue
        driver = os.path.basename(os.path.realpath(device / "driver"))
        cards.append(
            {
                "card": card.name,
                "vendor": _read(device / "vendor"),
                "device": _read(device / "device"),
                "driver": driver,
                "driver_version": _read(Path("/sys/module") / driver / "version")
                or _read(Path("/sys/module") / driver / "srcversion"),
                "firmware": None,
            }
        )
    note = "sysfs: firmware versions need xpu-smi (or debugfs, root only)"
    if not cards:
        note = f"no DRM cards under {sysfs} (devices {', '.join(devices)})"
    return {"source": "sysfs", "devices": cards, "note": note}


def _smi(data: Any) -> list[dict[str, Any]]:
    items = data.get("device_list", []) if isinstance(data, dict) else []
    keep = ("device_id", "device_name", "pci_bdf_address", "driver_version", "gfx_firmware_version")
    return [{k: item.get(k) for k in keep if k in item} for item in items if isinstance(item, dict)]


def collect(
    profile: Profile | None,
    *,
    container_attrs: dict[str, Any] | None,
    image_attrs: dict[str, Any] | None,
    base_url: str | None,
) -> dict[str, Any]:
    """The whole fingerprint. ``container_attrs``: the slot's container when it is the one
    that ran the profile measured; ``image_attrs``: the image it ran (else the profile's)."""
    config = (container_attrs or {}).get("Config") or {}
    labels = config.get("Labels") or {}
    ref = config.get("Image") or (profile.image if profile is not None else "")
    container: dict[str, Any] = {
        "note": "no container of this host's slot ran the measured profile (a plain vLLM "
        "endpoint, or the slot runs another profile): image from the profile's MODEL_SLOT_IMAGE"
    }
    if container_attrs is not None:
        container = {
            "id": container_attrs.get("Id"),
            "image_id": container_attrs.get("Image"),
            "profile": labels.get("modelslot.profile"),
            "profile_hash": labels.get("modelslot.profile-hash"),
        }
    devices = profile.devices if profile is not None else ()
    return {
        "container": container,
        "image": image_part(image_attrs, ref),
        "vllm": vllm_part(base_url),
        "patches": patches_part(image_attrs),
        "host": host_part(),
        "xpu": xpu_part(devices),
    }


def from_slot(
    profile: Profile | None, base_url: str | None, expect_hash: str | None = None
) -> dict[str, Any]:
    """``collect`` with what Docker says about this host's slot (``MODEL_SLOT_*`` settings).
    The slot's container counts only when it carries the measured profile's hash
    (``expect_hash``, default the profile's). Never raises: without Docker the parts say so,
    also where the Docker SDK is not installed (bench run inside the model container)."""
    try:
        import docker  # noqa: PLC0415
        import docker.errors  # noqa: PLC0415
    except ImportError:
        found = collect(profile, container_attrs=None, image_attrs=None, base_url=base_url)
        found["image"]["note"] = "no Docker SDK where this ran (e.g. inside the model container)"
        return found

    from orchestrator.slot.docker_slot import HASH_LABEL, DockerSlot, SlotConfig  # noqa: PLC0415

    expect = expect_hash or (profile.hash if profile is not None else None)
    container_attrs = image_attrs = None
    try:
        client = docker.from_env(timeout=30)
        container_attrs = DockerSlot(SlotConfig.from_env(), client).inspect()
        labels = ((container_attrs or {}).get("Config") or {}).get("Labels") or {}
        if container_attrs is not None and (not expect or labels.get(HASH_LABEL) != expect):
            container_attrs = None
        image = (container_attrs or {}).get("Image") or (profile.image if profile else None)
        if image:
            try:
                image_attrs = client.images.get(image).attrs
            except docker.errors.ImageNotFound:
                image_attrs = None
    except docker.errors.DockerException as exc:
        found = collect(profile, container_attrs=None, image_attrs=None, base_url=base_url)
        found["image"]["note"] = f"Docker not reachable: {exc}"
        return found
    return collect(
        profile, container_attrs=container_attrs, image_attrs=image_attrs, base_url=base_url
    )


def image_id(ref: str) -> str | None:
    """The ID ``ref`` has on this engine now, or None (no Docker, no such image)."""
    import docker  # noqa: PLC0415
    import docker.errors  # noqa: PLC0415

    try:
        found = docker.from_env(timeout=30).images.get(ref).id
    except docker.errors.DockerException:
        return None
    return str(found) if found else None
