"""The local Debian base, for hosts (CI here) that reach no container registry.

``debootstrap --variant=minbase`` lays out Debian bookworm with python3, python3-venv,
ca-certificates and libnuma1 (vLLM CPU's ``_C`` extension links it) from the Debian mirror;
``tar | docker import`` turns the tree into an image. The pipe is two processes joined in
Python: no shell. The package list is recorded in a label; an existing tag whose label lists the
same packages is reused, any other is rebuilt.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
import docker.errors

from orchestrator.errors import ImageError
from orchestrator.progress import Progress, note

LOCAL_BASE = "modelslot/debian:bookworm-local"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "ca-certificates", "libnuma1")
PACKAGES_LABEL = "org.modelslot.base.packages"


def exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def current(client: docker.DockerClient, tag: str) -> bool:
    """``tag`` exists and was imported with today's package list."""
    try:
        found = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    labels = found.attrs.get("Config", {}).get("Labels") or {}
    return bool(labels.get(PACKAGES_LABEL) == ",".join(PACKAGES))


def debootstrap_command(target: Path, mirror: str = MIRROR) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        mirror,
    ]


def _import(tree: Path, tag: str) -> None:
    tar = subprocess.Popen(["tar", "-C", str(tree), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        imported = subprocess.run(
            [
                "docker",
                "import",
                "--change",
                f"LABEL {PACKAGES_LABEL}={','.join(PACKAGES)}",
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "-",
                tag,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        tar.stdout.close()
        tar_rc = tar.wait()
    if tar_rc != 0:
        raise ImageError(f"tar of {tree} failed (exit {tar_rc})")
    if imported.returncode != 0:
        raise ImageError(f"docker import failed: {imported.stderr.strip()}")


def ensure_base(
    client: docker.DockerClient,
    progress: Progress,
    tag: str = LOCAL_BASE,
    force: bool = False,
    mirror: str = MIRROR,
) -> str:
    """Return ``tag``, building it first when it is missing (or when ``force``)."""
    if current(client, tag) and not force:
        progress(note(f"base {tag}: present, reused"))
        return tag
    if exists(client, tag):
        progress(note(f"base {tag}: present but not built with {', '.join(PACKAGES)}; rebuilding"))
    if shutil.which("debootstrap") is None:
        raise ImageError(
            f"{tag} is missing and debootstrap is not installed: apt-get install debootstrap"
        )
    with tempfile.TemporaryDirectory(prefix="model-slot-base-") as tmp:
        tree = Path(tmp) / "rootfs"
        progress(note(f"base {tag}: debootstrap {SUITE} from {mirror}"))
        result = subprocess.run(
            debootstrap_command(tree, mirror), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise ImageError(f"debootstrap failed (exit {result.returncode}):\n{tail}")
        # Package caches are not part of the image.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (tree / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        progress(note(f"base {tag}: docker import"))
        _import(tree, tag)
    progress(note(f"base {tag}: built"))
    return tag
