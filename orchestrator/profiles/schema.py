"""The keys a profile may set, their types and what each allows.

The names are those of the lab's scripts (``MODEL_SLOT_*``, ``VLLM_*``, ``FRONTDOOR_*``), so their
profiles port over. Keys outside these prefixes pass through to the model container unchanged
(``ONEAPI_DEVICE_SELECTOR``, ``ZE_AFFINITY_MASK``, ``CCL_*``, ``XPU_GRAPH`` ...), and so do the
environment variables vLLM reads itself (``VLLM_XPU_*``, ``VLLM_CPU_*`` ...); the few of those
that the project's profiles use are checked here too (``VLLM_CPU_KVCACHE_SPACE`` ...).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from orchestrator import cpus

#: A checker returns None when the value is fine, else what is allowed.
Checker = Callable[[str], str | None]

PROFILE_PREFIXES = ("MODEL_SLOT_", "VLLM_", "FRONTDOOR_")

STATUS_FIXED = ("baseline", "production", "research")
STATUS_PREFIXES = ("research-", "experiment-", "rejected-", "blocked-")
#: Statuses that ``switch`` refuses without ``--force``.
REFUSED_STATUS_PREFIXES = ("rejected-", "blocked-")

_SIZE = re.compile(r"^[0-9]+[bkmg]?$", re.IGNORECASE)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _integer(minimum: int = 1) -> Checker:
    def check(value: str) -> str | None:
        if re.fullmatch(r"[0-9]+", value) and int(value) >= minimum:
            return None
        return f"a whole number >= {minimum}"

    return check


def _number(minimum: float, maximum: float | None = None) -> Checker:
    allowed = f"a number from {minimum} to {maximum}" if maximum else f"a number >= {minimum}"

    def check(value: str) -> str | None:
        try:
            number = float(value)
        except ValueError:
            return allowed
        if (
            not math.isfinite(number)
            or number < minimum
            or (maximum is not None and number > maximum)
        ):
            return allowed
        return None

    return check


def _choice(*choices: str) -> Checker:
    def check(value: str) -> str | None:
        return None if value in choices else "one of " + ", ".join(choices)

    return check


def _flag(value: str) -> str | None:
    return None if value in ("0", "1") else "1 or 0"


def _text(value: str) -> str | None:
    return None if value.strip() else "a non-empty text"


def _any(value: str) -> str | None:
    return None


def _name(value: str) -> str | None:
    return None if _NAME.match(value) else "a profile name: lowercase letters, digits, . _ -"


def _size(value: str) -> str | None:
    return None if _SIZE.match(value) else "a size such as 16g, 512m or 1073741824"


def _abs_path(value: str) -> str | None:
    return None if value.startswith("/") else "an absolute path inside the container"


def _image(value: str) -> str | None:
    if value and not any(char.isspace() for char in value):
        return None
    return "an image reference such as modelslot/vllm-xpu:local"


def _status(value: str) -> str | None:
    if value in STATUS_FIXED:
        return None
    for prefix in STATUS_PREFIXES:
        if value.startswith(prefix) and _SLUG.match(value[len(prefix) :]):
            return None
    return "baseline, production, research, or research-*/experiment-*/rejected-*/blocked-*"


def _modalities(value: str) -> str | None:
    return None if value in ("text", "text,image") else "text or text,image"


def _devices(value: str) -> str | None:
    if value == "":
        return None  # no devices: CPU profiles
    if all(part.startswith("/dev/") for part in value.split(",")):
        return None
    return "a comma list of /dev paths, e.g. /dev/dri, or empty for none"


def _json_object(value: str) -> str | None:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        return f"a JSON object (not JSON: {exc.msg} at column {exc.colno})"
    return None if isinstance(parsed, dict) else 'a JSON object such as {"key": 1}'


def _json_string_array(value: str) -> str | None:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        return f"a JSON array of strings (not JSON: {exc.msg} at column {exc.colno})"
    if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
        return None
    return 'a JSON array of strings such as ["--seed", "0"]'


def _omp_threads_bind(value: str) -> str | None:
    """vLLM CPU's ``VLLM_CPU_OMP_THREADS_BIND``: ``auto``, ``nobind``, or one CPU list per
    worker rank, separated by ``|`` (``0-3|4-7`` for tensor-parallel 2)."""
    if value in ("auto", "nobind"):
        return None
    allowed = f"auto, nobind, or {cpus.ALLOWED} per worker rank, ranks separated by |"
    try:
        ranks = [cpus.parse(rank) for rank in value.split("|")]
    except ValueError:
        return allowed
    for index, rank in enumerate(ranks):
        for other in ranks[:index]:
            if rank & other:
                return f"{allowed}, no CPU in two ranks (CPU {min(rank & other)} is)"
    return None


def _quantization(value: str) -> str | None:
    return None if re.fullmatch(r"[a-z0-9_-]+", value) else "auto, none or a vLLM method name"


@dataclass(frozen=True)
class KeySpec:
    group: str
    check: Checker
    help: str
    default: str | None = None


def _spec(group: str, check: Checker, help_: str, default: str | None = None) -> KeySpec:
    return KeySpec(group=group, check=check, help=help_, default=default)


KEYS: dict[str, KeySpec] = {
    # identity
    "MODEL_SLOT_NAME": _spec("identity", _name, "the profile's name; must equal the file's stem"),
    "MODEL_SLOT_TITLE": _spec("identity", _text, "a human title"),
    "MODEL_SLOT_HF_ID": _spec("identity", _any, "the Hugging Face id the weights came from"),
    "MODEL_SLOT_MODALITIES": _spec("identity", _modalities, "text or text,image", "text"),
    "MODEL_SLOT_STATUS": _spec("identity", _status, "lifecycle status"),
    "MODEL_SLOT_PURPOSE": _spec("identity", _any, "why the profile exists"),
    # inheritance
    "MODEL_SLOT_EXTENDS": _spec("inheritance", _name, "the profile this one overrides"),
    # container
    "MODEL_SLOT_IMAGE": _spec("container", _image, "the model image"),
    "MODEL_DIR": _spec(
        "container", _text, "host model directory, absolute or relative to the model root"
    ),
    "MODEL_SLOT_DEVICES": _spec("container", _devices, "devices to pass in", "/dev/dri"),
    "MODEL_SLOT_GROUP_ADD": _spec("container", _any, "extra group for device access", "render"),
    "MODEL_SLOT_SHM_SIZE": _spec("container", _size, "shared memory size", "16g"),
    "MODEL_SLOT_MEMORY_LIMIT": _spec("container", _size, "memory limit (no swap on top)"),
    "MODEL_SLOT_STARTUP_TIMEOUT_S": _spec(
        "container", _number(1), "seconds to wait for ready", "1800"
    ),
    "MODEL_SLOT_STOP_TIMEOUT_S": _spec(
        "container", _number(0), "seconds between SIGTERM and SIGKILL", "30"
    ),
    "MODEL_SLOT_CONTAINER_PORT": _spec("container", _integer(1), "vLLM's port inside", "8000"),
    "MODEL_SLOT_CACHE_VOLUME": _spec("container", _name, "compile-cache volume name"),
    "VLLM_CACHE_ROOT": _spec(
        "container", _abs_path, "compile-cache path in the container", "/var/cache/vllm"
    ),
    # watchdog (orchestrator/control/watchdog.py; docs/slot.md "The watchdog")
    "MODEL_SLOT_WATCHDOG": _spec("watchdog", _flag, "1: prove the model generates; 0: off", "1"),
    "MODEL_SLOT_WATCHDOG_PROBE_INTERVAL_S": _spec(
        "watchdog",
        _number(1),
        "seconds without a relayed token (idle or busy) before a 1-token probe",
        "30",
    ),
    "MODEL_SLOT_WATCHDOG_WEDGE_S": _spec(
        "watchdog", _number(1), "seconds a probe may go unanswered before the model is wedged", "60"
    ),
    "MODEL_SLOT_WATCHDOG_RESTART_BUDGET": _spec(
        "watchdog", _integer(0), "watchdog restarts per window before the route goes faulted", "3"
    ),
    "MODEL_SLOT_WATCHDOG_RESTART_WINDOW_S": _spec(
        "watchdog", _number(60), "the restart budget's sliding window, seconds", "3600"
    ),
    "MODEL_SLOT_WATCHDOG_DECODE_INTERVAL_S": _spec(
        "watchdog", _number(1), "seconds between decode-speed probes (only when idle)", "300"
    ),
    "MODEL_SLOT_WATCHDOG_DECODE_TOKENS": _spec(
        "watchdog", _integer(0), "tokens a decode probe generates (0: no decode probes)", "32"
    ),
    "MODEL_SLOT_WATCHDOG_DEGRADED_FRACTION": _spec(
        "watchdog", _number(0.01, 0.99), "degraded below baseline x (1 - this)", "0.5"
    ),
    "MODEL_SLOT_WATCHDOG_DEGRADED_PROBES": _spec(
        "watchdog", _integer(1), "slow decode probes in a row that make degraded", "3"
    ),
    "MODEL_SLOT_WATCHDOG_RESTART_ON_DEGRADED": _spec(
        "watchdog", _flag, "1: restart a degraded model (within the budget)", "0"
    ),
    # vLLM
    "VLLM_MODEL": _spec("vllm", _abs_path, "model path in the container", "/model"),
    "VLLM_SERVED_MODEL_NAME": _spec("vllm", _text, "the name clients ask for"),
    "VLLM_DTYPE": _spec(
        "vllm", _choice("auto", "bfloat16", "float16", "half", "float32", "float"), "dtype"
    ),
    "VLLM_QUANTIZATION": _spec("vllm", _quantization, "quantization method (auto/none: no flag)"),
    "VLLM_TENSOR_PARALLEL_SIZE": _spec("vllm", _integer(1), "tensor-parallel size"),
    "VLLM_PIPELINE_PARALLEL_SIZE": _spec("vllm", _integer(1), "pipeline-parallel size"),
    "VLLM_DISTRIBUTED_EXECUTOR_BACKEND": _spec(
        "vllm", _choice("mp", "ray", "uni", "external_launcher"), "executor backend"
    ),
    "VLLM_MAX_MODEL_LEN": _spec("vllm", _integer(16), "context length in tokens"),
    "VLLM_MAX_NUM_BATCHED_TOKENS": _spec("vllm", _integer(1), "tokens per scheduler step"),
    "VLLM_MAX_NUM_SEQS": _spec("vllm", _integer(1), "concurrent sequences"),
    "VLLM_GPU_MEMORY_UTILIZATION": _spec("vllm", _number(0.05, 1.0), "device memory fraction"),
    "VLLM_BLOCK_SIZE": _spec("vllm", _integer(1), "KV-cache block size"),
    "VLLM_KV_CACHE_DTYPE": _spec(
        "vllm", _choice("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16"), "KV-cache dtype"
    ),
    "VLLM_KV_CACHE_MEMORY_BYTES": _spec("vllm", _integer(1), "KV-cache bytes"),
    "VLLM_ENABLE_PREFIX_CACHING": _spec("vllm", _flag, "1 on, 0 off, unset: vLLM default"),
    "VLLM_TRUST_REMOTE_CODE": _spec("vllm", _flag, "trust the model's own code"),
    "VLLM_LANGUAGE_MODEL_ONLY": _spec("vllm", _flag, "load the language model only"),
    "VLLM_ENFORCE_EAGER": _spec("vllm", _flag, "skip graph capture / torch.compile"),
    "VLLM_SHUTDOWN_TIMEOUT": _spec("vllm", _integer(0), "seconds vLLM drains on SIGTERM"),
    "VLLM_COMPILATION_CONFIG": _spec("vllm", _json_object, "JSON compilation config"),
    "VLLM_EXTRA_ARGS": _spec("vllm", _json_string_array, "more vLLM flags, a JSON array"),
    # vLLM CPU reads these itself. The host decides which CPUs the container may use
    # (MODEL_SLOT_CPUSET, docs/slot.md); `auto` binds inside that set.
    "VLLM_CPU_OMP_THREADS_BIND": _spec(
        "vllm",
        _omp_threads_bind,
        "vLLM CPU: CPUs its OpenMP threads bind to (auto: the container's, less one reserved)",
        "auto",
    ),
    "VLLM_CPU_NUM_OF_RESERVED_CPU": _spec(
        "vllm", _integer(0), "vLLM CPU: CPUs `auto` leaves to the other processes"
    ),
    "VLLM_CPU_KVCACHE_SPACE": _spec("vllm", _integer(0), "vLLM CPU: KV-cache size in GiB"),
    # frontdoor
    "FRONTDOOR_MAX_ACTIVE_GENERATIONS": _spec("frontdoor", _integer(1), "generation cap", "1"),
    "FRONTDOOR_QUEUE_TIMEOUT_S": _spec(
        "frontdoor", _number(0), "seconds a generation may queue (0 = fail fast)", "0"
    ),
    "FRONTDOOR_MAX_QUEUED_GENERATIONS": _spec(
        "frontdoor", _integer(0), "generations that may wait for a place (more: 503)", "64"
    ),
    "FRONTDOOR_LOG_EVENTS": _spec("frontdoor", _flag, "one JSON line per generation", "1"),
    "FRONTDOOR_DEFAULT_MAX_OUTPUT_TOKENS": _spec("frontdoor", _integer(1), "output default"),
    "FRONTDOOR_MAX_OUTPUT_TOKENS": _spec("frontdoor", _integer(1), "output cap"),
    "FRONTDOOR_CHAT_TEMPLATE_KWARGS_JSON": _spec(
        "frontdoor", _json_object, "default chat_template_kwargs; the client's values win"
    ),
    "FRONTDOOR_REWRITE_REQUEST_MODEL": _spec(
        "frontdoor", _flag, "rewrite `model` to the served name", "0"
    ),
    "FRONTDOOR_SWITCH_HOLD_S": _spec(
        "frontdoor", _number(0), "seconds a request is held during a switch", "30"
    ),
}

#: Keys a resolved profile must have.
REQUIRED = (
    "MODEL_SLOT_TITLE",
    "MODEL_SLOT_STATUS",
    "MODEL_SLOT_IMAGE",
    "VLLM_SERVED_MODEL_NAME",
    "VLLM_MAX_MODEL_LEN",
)

#: Keys that are never inherited: each file speaks for itself here.
NOT_INHERITED = frozenset({"MODEL_SLOT_NAME", "MODEL_SLOT_EXTENDS"})


@cache
def vllm_env_names() -> frozenset[str]:
    """Environment variables vLLM itself reads; a profile may pass them through."""
    text = resources.files("orchestrator").joinpath("data/vllm_env_names.txt").read_text()
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


#: vLLM variables under these prefixes pass through even when the pinned list lacks them:
#: platform images (and our patches) add their own, e.g. ``VLLM_XPU_FORCE_GRAPH_WITH_COMM``.
PASSTHROUGH_VLLM_PREFIXES = ("VLLM_XPU_", "VLLM_CPU_")


def is_passthrough(key: str) -> bool:
    """Whether a key outside the schema may still appear in a profile."""
    if not key.startswith(PROFILE_PREFIXES):
        return True
    if key.startswith("VLLM_"):
        return key in vllm_env_names() or key.startswith(PASSTHROUGH_VLLM_PREFIXES)
    return False
