"""Manifests and staleness: what makes a built image STALE, and what does not."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from orchestrator.images import build


def _manifest() -> dict[str, Any]:
    return build.make_manifest(
        build.IMAGES["cpu"], "modelslot/debian:bookworm-local", "sha256:1", "r1"
    )


def test_manifest_lists_base_lock_inputs_and_revision() -> None:
    manifest = _manifest()
    assert manifest["base"] == {"ref": "modelslot/debian:bookworm-local", "id": "sha256:1"}
    assert manifest["lock"]["path"] == "images/vllm-cpu/requirements.lock"
    assert len(manifest["lock"]["sha256"]) == 64
    assert {
        "images/vllm-cpu/Dockerfile",
        "images/common/entrypoint.py",
        "orchestrator/vllm_argv.py",
        "images/vllm-cpu/make_models.py",
    } <= set(manifest["inputs"])
    assert manifest["git_revision"] == "r1"
    json.dumps(manifest)  # it must fit in a label


def test_an_identical_manifest_is_up_to_date_whatever_the_revision() -> None:
    built = _manifest()
    current = copy.deepcopy(built)
    current["git_revision"] = "r2"
    assert build.stale_reasons(built, current) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m["lock"].update(sha256="0" * 64), "lock images/vllm-cpu/requirements.lock"),
        (lambda m: m["inputs"].update({"orchestrator/vllm_argv.py": "0" * 64}), "vllm_argv.py"),
        (lambda m: m["inputs"].update({"images/common/new.py": "0" * 64}), "new.py changed"),
        (lambda m: m["base"].update(id="sha256:2"), "was rebuilt"),
        (lambda m: m["base"].update(ref="debian:other"), "base is now debian:other"),
    ],
)
def test_a_changed_input_makes_the_image_stale(change: Any, reason: str) -> None:
    built = _manifest()
    current = copy.deepcopy(built)
    change(current)
    reasons = build.stale_reasons(built, current)
    assert any(reason in r for r in reasons), reasons


def test_another_manifest_schema_is_stale() -> None:
    built = _manifest()
    built["schema"] = 0
    assert build.stale_reasons(built, _manifest()) == ["manifest schema changed"]


def test_the_xpu_image_hashes_every_patch() -> None:
    inputs = build.input_hashes(build.IMAGES["xpu"])
    patches = [path for path in inputs if path.startswith("patches/")]
    assert any(path.endswith(".patch") for path in patches)
    assert "images/vllm-xpu/apply_patches.py" in inputs


def test_dockerfile_base_defaults_are_pinned_by_digest() -> None:
    for key in ("cpu", "xpu", "frontdoor"):
        default = build.dockerfile_base_default(build.IMAGES[key])
        assert default is not None
        assert "@sha256:" in default, (key, default)
