"""The built images, as real containers.

- vLLM CPU, started with nothing but a shipped CPU profile (its environment and shm size):
  SmolLM2 answers a chat request sensibly, the tiny model answers the same way twice, vLLM is
  PID 1 and not root, and ``vllm bench serve`` works inside the image.
- vLLM XPU (built against the substitute base here): the patches are in its vLLM, Transformers is
  pinned, and its entrypoint turns an XPU profile into the expected argv.
- frontdoor: non-root, read-only root filesystem, state in its volume, healthy by its HEALTHCHECK.

Build them first: ``python -m orchestrator images build``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import docker
import httpx
import pytest
from openai import OpenAI

from orchestrator.images import build
from tests.conftest import VllmServer, shipped_profile
from tests.support import wait_until

pytestmark = pytest.mark.docker

XPU_IMAGE = build.IMAGES["xpu"].tag
FRONTDOOR_IMAGE = build.IMAGES["frontdoor"].tag


def _need(client: docker.DockerClient, tag: str) -> None:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{tag} is not built; `python -m orchestrator images build` builds it")


def _name(what: str) -> str:
    return f"modelslot-test-images-{what}-{uuid.uuid4().hex[:8]}"


def _run_once(client: docker.DockerClient, image: str, **kwargs: Any) -> tuple[int, str, str]:
    """Run a container to completion; return exit code, stdout, stderr."""
    container = client.containers.run(image, detach=True, name=_name("once"), **kwargs)
    try:
        result = container.wait(timeout=120)
        out = container.logs(stdout=True, stderr=False).decode()
        err = container.logs(stdout=False, stderr=True).decode()
        return int(result["StatusCode"]), out, err
    finally:
        container.remove(force=True, v=True)


def _exec(container: Any, command: list[str]) -> str:
    code, output = container.exec_run(command)
    text: str = output.decode(errors="replace")
    assert code == 0, (command, text)
    return text


# --- vLLM CPU ---------------------------------------------------------------------------------


# Greedy bf16 text from a 135M model depends on the CPU's kernel path (vLLM CPU takes AMX
# kernels where the CPU has them): "What is the capital of France?" answers "Paris" on one path
# and "L'Étoile, la Marseillaise, ..." on the other (docs/images.md). Each question below is
# asked in several phrasings, each checked on both paths; at least one phrasing of every
# question must name the right city. A broken model or template names none of them.
CAPITALS = {
    "paris": (
        "What is the capital of France? Answer in one sentence.",
        "Name the capital city of France.",
        "Complete: The capital of France is",
    ),
    "rome": ("What is the capital of Italy?", "Name the capital city of Italy."),
    "tokyo": ("What is the capital of Japan?", "Name the capital city of Japan."),
}


@pytest.mark.vllm
def test_smollm2_answers_a_chat_request_sensibly(smollm2_server: VllmServer) -> None:
    client = OpenAI(base_url=f"{smollm2_server.base_url}/v1", api_key="unused", timeout=120)

    def ask(question: str) -> tuple[str, str | None, int]:
        reply = client.chat.completions.create(
            model=smollm2_server.served_model_name,
            messages=[{"role": "user", "content": question}],
            temperature=0,
            max_tokens=32,
        )
        assert reply.usage is not None
        choice = reply.choices[0]
        return choice.message.content or "", choice.finish_reason, reply.usage.completion_tokens

    for city, questions in CAPITALS.items():
        answers = {question: ask(question) for question in questions}
        for question, (text, finish, tokens) in answers.items():
            # Properties that hold on every kernel path.
            assert text.strip(), (question, answers)
            assert finish in ("stop", "length"), (question, answers)
            assert 0 < tokens <= 32, (question, answers)
        right = [q for q, (text, _, _) in answers.items() if city in text.lower()]
        assert right, f"no phrasing named {city}: {answers}"
    # Greedy decoding on one server is deterministic, whatever the CPU.
    assert ask(CAPITALS["paris"][0]) == ask(CAPITALS["paris"][0])
    models = client.models.list().data
    assert [m.id for m in models] == ["smollm2-135m-instruct"]


@pytest.mark.vllm
def test_vllm_is_pid_1_and_not_root(smollm2_server: VllmServer) -> None:
    container = smollm2_server.container
    cmdline = _exec(container, ["cat", "/proc/1/cmdline"]).split("\0")
    assert cmdline[1:3] == ["-m", "vllm.entrypoints.openai.api_server"], cmdline
    assert "--enforce-eager" in cmdline
    assert _exec(container, ["id", "-u"]).strip() == "10001"
    # The profile-only keys were dropped before the exec; pass-through keys stayed.
    environ = _exec(container, ["cat", "/proc/1/environ"]).split("\0")
    assert "VLLM_CPU_KVCACHE_SPACE=1" in environ
    assert not [item for item in environ if item.startswith("VLLM_MAX_MODEL_LEN=")]


@pytest.mark.vllm
def test_compile_cache_lives_in_its_writable_volume(smollm2_server: VllmServer) -> None:
    container = smollm2_server.container
    environ = _exec(container, ["cat", "/proc/1/environ"]).split("\0")
    assert "VLLM_CACHE_ROOT=/var/cache/vllm" in environ
    check = "import os; print(os.access('/var/cache/vllm', os.W_OK))"
    assert _exec(container, ["python3", "-c", check]).strip() == "True"
    volumes = container.attrs["Config"].get("Volumes") or {}
    assert "/var/cache/vllm" in volumes


@pytest.mark.vllm
def test_vllm_bench_serve_runs_inside_the_image(smollm2_server: VllmServer) -> None:
    output = _exec(
        smollm2_server.container,
        [
            "vllm",
            "bench",
            "serve",
            "--backend",
            "openai-chat",
            "--endpoint",
            "/v1/chat/completions",
            "--base-url",
            "http://127.0.0.1:8000",
            "--model",
            smollm2_server.served_model_name,
            "--tokenizer",
            "/opt/models/smollm2-135m-instruct",
            "--dataset-name",
            "random",
            "--random-input-len",
            "16",
            "--random-output-len",
            "4",
            "--num-prompts",
            "2",
            "--max-concurrency",
            "1",
        ],
    )
    assert "Successful requests:" in output, output[-2000:]


@pytest.mark.vllm
def test_tiny_llama_answers_deterministically(tiny_server: VllmServer) -> None:
    client = OpenAI(base_url=f"{tiny_server.base_url}/v1", api_key="unused", timeout=60)

    def ask() -> str:
        reply = client.chat.completions.create(
            model=tiny_server.served_model_name,
            messages=[{"role": "user", "content": "Hello, who are you?"}],
            temperature=0,
            max_tokens=16,
        )
        return reply.choices[0].message.content or ""

    first = ask()
    assert first
    assert ask() == first


# --- vLLM XPU (substitute base) ---------------------------------------------------------------

XPU_CHECK = """
import importlib.metadata, importlib.util, json, pathlib
root = pathlib.Path(importlib.util.find_spec("vllm").submodule_search_locations[0])
hf = pathlib.Path(importlib.util.find_spec("transformers").submodule_search_locations[0])
print(json.dumps({
    "parallel_state": (root / "distributed/parallel_state.py").read_text(),
    "mamba_utils": (root / "v1/worker/mamba_utils.py").read_text(),
    "registry": (root / "model_executor/models/registry.py").read_text(),
    "gemma4_unified_config": (
        hf / "models/gemma4_unified/configuration_gemma4_unified.py"
    ).read_text(),
    "transformers": importlib.metadata.version("transformers"),
    "manifest_files": sorted(p.name for p in pathlib.Path("/opt/model-slot").iterdir()),
}))
"""


def test_xpu_image_carries_the_patches_and_the_pins(docker_client: docker.DockerClient) -> None:
    _need(docker_client, XPU_IMAGE)
    code, out, err = _run_once(
        docker_client, XPU_IMAGE, entrypoint=["/opt/venv/bin/python3", "-c", XPU_CHECK]
    )
    assert code == 0, err
    found = json.loads(out)
    assert (
        'os.environ.get("VLLM_XPU_GRAPH_NOOP_COMM_CAPTURE", "0") == "1"'
        in (found["parallel_state"])
    )
    # Upstream already carries the Mamba pointer fix (patches/README.md).
    assert "src_ptrs=make_buffer(n, dtype=torch.uint64)" in found["mamba_utils"]
    assert found["transformers"] == "5.10.2"
    # Upstream already carries Gemma 4 unified, and the pinned Transformers its config.
    assert (
        '"Gemma4UnifiedForConditionalGeneration": (\n        "gemma4_unified",'
        in (found["registry"])
    )
    assert 'model_type = "gemma4_unified"' in found["gemma4_unified_config"]
    assert {"entrypoint.py", "vllm_argv.py"} <= set(found["manifest_files"])


def test_xpu_entrypoint_turns_an_xpu_profile_into_the_expected_argv(
    docker_client: docker.DockerClient,
) -> None:
    _need(docker_client, XPU_IMAGE)
    profile = shipped_profile("gemma4-12b-it-int4-autoround-c8")
    environment = {**profile.container_env(), "MODEL_SLOT_ENTRYPOINT_DRY_RUN": "1"}
    code, out, err = _run_once(docker_client, XPU_IMAGE, environment=environment)
    assert code == 0, err
    assert json.loads(out) == {"event": "exec", "argv": profile.serve_command()}


def test_xpu_manifest_names_its_base_and_lock(docker_client: docker.DockerClient) -> None:
    _need(docker_client, XPU_IMAGE)
    found = build.read_manifest(docker_client, XPU_IMAGE)
    assert found is not None
    manifest, _ = found
    assert manifest["base"]["ref"] == build.XPU_SUBSTITUTE_TAG
    assert manifest["lock"]["path"] == "images/vllm-xpu/requirements.lock"
    assert any(path.startswith("patches/") for path in manifest["inputs"])


# --- frontdoor --------------------------------------------------------------------------------


def test_frontdoor_runs_non_root_on_a_read_only_root(docker_client: docker.DockerClient) -> None:
    _need(docker_client, FRONTDOOR_IMAGE)
    volume = docker_client.volumes.create(_name("state"))
    container = docker_client.containers.run(
        FRONTDOOR_IMAGE,
        detach=True,
        name=_name("frontdoor"),
        read_only=True,
        environment={"FRONTDOOR_ADMIN_TOKEN": "test-token"},
        volumes={volume.name: {"bind": "/var/lib/frontdoor", "mode": "rw"}},
        ports={"8000/tcp": ("127.0.0.1", None), "8001/tcp": ("127.0.0.1", None)},
    )
    try:
        container.reload()
        public = container.ports["8000/tcp"][0]["HostPort"]
        admin = container.ports["8001/tcp"][0]["HostPort"]
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{public}/health", timeout=2).status_code == 200,
            60,
            "the frontdoor to answer /health",
        )
        assert _exec(container, ["id", "-u"]).strip() == "10002"
        # Its one piece of state goes to the volume, the rest of the filesystem is read-only.
        headers = {"Authorization": "Bearer test-token"}
        route = httpx.get(f"http://127.0.0.1:{admin}/admin/route", headers=headers, timeout=5)
        assert route.status_code == 200, route.text
        stored = httpx.put(
            f"http://127.0.0.1:{admin}/admin/route", headers=headers, json=route.json(), timeout=5
        )
        assert stored.status_code == 200, stored.text
        assert json.loads(_exec(container, ["cat", "/var/lib/frontdoor/route.json"]))
        code, _ = container.exec_run(["touch", "/opt/venv/x"])
        assert code != 0

        def healthy() -> bool:
            container.reload()
            return bool(container.attrs["State"]["Health"]["Status"] == "healthy")

        wait_until(healthy, 60, "the frontdoor's HEALTHCHECK to report healthy")
    finally:
        container.remove(force=True, v=True)
        volume.remove(force=True)
