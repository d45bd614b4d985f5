"""The argv builder: one place, shell-free, with the lab's flag rules."""

from __future__ import annotations

import json

import pytest

from orchestrator.vllm_argv import (
    ArgvError,
    build_command,
    build_serve_args,
    model_environment,
)

MINIMAL = {"VLLM_SERVED_MODEL_NAME": "m", "VLLM_MAX_MODEL_LEN": "2048"}


def flags(env: dict[str, str]) -> list[str]:
    return build_serve_args({**MINIMAL, **env})


def test_model_path_and_port_come_first() -> None:
    assert build_serve_args(MINIMAL)[:6] == [
        "--model",
        "/model",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    args = flags({"VLLM_MODEL": "/opt/models/x", "MODEL_SLOT_CONTAINER_PORT": "9000"})
    assert args[1] == "/opt/models/x" and args[5] == "9000"


@pytest.mark.parametrize("value", ["auto", "none", "AUTO", ""])
def test_quantization_auto_or_none_adds_no_flag(value: str) -> None:
    assert "--quantization" not in flags({"VLLM_QUANTIZATION": value})


def test_quantization_method_is_passed() -> None:
    args = flags({"VLLM_QUANTIZATION": "fp8"})
    assert args[args.index("--quantization") + 1] == "fp8"


@pytest.mark.parametrize(
    ("value", "expected", "absent"),
    [
        ("1", "--enable-prefix-caching", "--no-enable-prefix-caching"),
        ("0", "--no-enable-prefix-caching", "--enable-prefix-caching"),
    ],
)
def test_prefix_caching_on_off(value: str, expected: str, absent: str) -> None:
    args = flags({"VLLM_ENABLE_PREFIX_CACHING": value})
    assert expected in args and absent not in args


def test_prefix_caching_unset_leaves_vllm_default() -> None:
    assert not any("prefix-caching" in arg for arg in flags({}))


def test_json_value_is_one_argument_even_with_spaces_and_quotes() -> None:
    config = '{"compile_sizes": [1, 8], "note": "a b; rm -rf /"}'
    args = flags({"VLLM_COMPILATION_CONFIG": config})
    assert args[args.index("--compilation-config") + 1] == config
    assert json.loads(args[args.index("--compilation-config") + 1])["compile_sizes"] == [1, 8]


def test_extra_args_are_appended_verbatim() -> None:
    args = flags({"VLLM_EXTRA_ARGS": '["--seed", "0", "--x=$(whoami)"]'})
    assert args[-3:] == ["--seed", "0", "--x=$(whoami)"]


def test_bad_extra_args_raise_with_the_key() -> None:
    with pytest.raises(ArgvError, match="VLLM_EXTRA_ARGS"):
        flags({"VLLM_EXTRA_ARGS": '{"a": 1}'})


def test_switches() -> None:
    args = flags(
        {"VLLM_TRUST_REMOTE_CODE": "1", "VLLM_ENFORCE_EAGER": "1", "VLLM_LANGUAGE_MODEL_ONLY": "0"}
    )
    assert "--trust-remote-code" in args and "--enforce-eager" in args
    assert "--language-model-only" not in args


def test_command_starts_with_the_module_launcher() -> None:
    assert build_command(MINIMAL)[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]


def test_model_environment_drops_profile_only_keys_and_keeps_the_rest() -> None:
    env = model_environment(
        {
            **MINIMAL,
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "ZE_AFFINITY_MASK": "0",
            "VLLM_EXTRA_ARGS": "[]",
            "VLLM_CACHE_ROOT": "/c",
        }
    )
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "1", "ZE_AFFINITY_MASK": "0", "VLLM_CACHE_ROOT": "/c"}
