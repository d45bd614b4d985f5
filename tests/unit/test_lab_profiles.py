"""Each seed profile against the lab's own values (../shared/seed/b70-lab-readme.txt).

``LAB`` is copied by hand from the lab README's "Current Profiles" table and its "Notes On The
Candidate Models": name, status, modalities, the purpose text, the checkpoint where the lab names
one, and the settings the notes give. A key the lab does not give is absent from a row, and the
profile's value for it is a judgement of this project (the .env file says so in a comment). An
edit that drifts from the lab fails here.

The README itself is not in this repository. With ``MODEL_SLOT_LAB_README`` pointing at it,
``test_the_table_is_the_lab_readmes_own`` also compares the table with the README's text.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.profiles.store import Profile, ProfileStore

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ProfileStore(REPO / "profiles")

C8 = "gemma4-12b-it-int4-autoround-c8"
GRAPH_ENV = {
    "XPU_GRAPH": "1",
    "VLLM_XPU_ENABLE_XPU_GRAPH": "1",
    "VLLM_XPU_FORCE_GRAPH_WITH_COMM": "1",
    "VLLM_XPU_GRAPH_NOOP_COMM_CAPTURE": "1",
}
C8_COMPILE = {
    "use_inductor_graph_partition": True,
    "compile_sizes": [1],
    "cudagraph_mode": "PIECEWISE",
}


@dataclass(frozen=True)
class Lab:
    status: str
    modalities: str
    purpose: str
    hf_id: str = ""  # "" = the lab names no checkpoint
    settings: dict[str, str] = field(default_factory=dict)  # profile key -> the lab's value


GEMMA4 = "Intel/gemma-4-12B-it-int4-AutoRound"
FULL_32K = {"VLLM_MAX_MODEL_LEN": "32768", "VLLM_DTYPE": "bfloat16"}


def _seqs(n: int) -> dict[str, str]:
    return {"VLLM_MAX_NUM_SEQS": str(n), "FRONTDOOR_MAX_ACTIVE_GENERATIONS": str(n)}


LAB: dict[str, Lab] = {
    "minimax-m27-c1": Lab(
        "baseline",
        "text",
        "Deployable MiniMax M2.7 INT4 AutoRound baseline endpoint, 32K context, one active "
        "generation.",
        settings={"VLLM_MAX_MODEL_LEN": "32768", "FRONTDOOR_MAX_ACTIVE_GENERATIONS": "1"},
    ),
    "qwen36-35b-a3b-int4-autoround": Lab(
        "research",
        "text,image",
        "Preferred Qwen 35B candidate. Public W4A16 AutoRound checkpoint, working after the local "
        "XPU Mamba pointer patch.",
        hf_id="abhinand/Qwen3.6-35B-A3B-int4-AutoRound",
    ),
    "gemma3-12b-it-int4-autoround": Lab(
        "research",
        "text,image",
        "Tested Gemma fallback. Public 12B INT4 AutoRound checkpoint, much faster than Qwen 35B on "
        "the 2K/128 concurrency ladder.",
        hf_id="OPEA/gemma-3-12b-it-int4-AutoRound",
        settings={"VLLM_DTYPE": "bfloat16"},
    ),
    "gemma4-12b-it-int4-autoround": Lab(
        "research",
        "text,image",
        "Current Gemma 4 candidate. Intel W4A16 AutoRound checkpoint, working after Transformers "
        "5.10.2 plus the local vLLM gemma4_unified backport.",
        hf_id=GEMMA4,
        settings={"VLLM_DTYPE": "bfloat16"},
    ),
    C8: Lab(
        "production",
        "text,image",
        "Active full-context Gemma 4 profile: 32768-token context, 8 active generations, prefix "
        "caching, XPU graph capture, no-auth LAN endpoint.",
        hf_id=GEMMA4,
        settings={
            **FULL_32K,
            **_seqs(8),
            **GRAPH_ENV,
            "VLLM_ENABLE_PREFIX_CACHING": "1",
            "FRONTDOOR_QUEUE_TIMEOUT_S": "0",  # fails fast with 503 beyond 8
            "FRONTDOOR_LOG_EVENTS": "1",  # the nolog variant is the one without
        },
    ),
    "gemma4-12b-it-int4-autoround-c10": Lab(
        "experiment-c10",
        "text,image",
        "Full-32K Gemma 4 research profile: 10 active generations. Short prompts are faster in "
        "aggregate than c8, but near-32K throughput is not better and TTFT is worse.",
        hf_id=GEMMA4,
        settings={**FULL_32K, **_seqs(10)},
    ),
    "gemma4-12b-it-int4-autoround-c12": Lab(
        "rejected-device-lost",
        "text,image",
        "Full-32K Gemma 4 failure-boundary profile. Startup succeeded, then burst load hit Level "
        "Zero out-of-resources and device-lost. Retained for reproduction only.",
        hf_id=GEMMA4,
        settings={**FULL_32K, **_seqs(12)},  # 12: the profile's name; "Full-32K": the purpose
    ),
    "gemma4-12b-it-int4-autoround-c16": Lab(
        "experiment-c16",
        "text,image",
        "Full-32K Gemma 4 research profile with 16 active generations. Do not use as production "
        "without a fresh stability/quality pass.",
        hf_id=GEMMA4,
        settings={**FULL_32K, **_seqs(16)},
    ),
    "gemma4-12b-it-int4-autoround-c64": Lab(
        "research-c64",
        "text,image",
        "High-concurrency Gemma 4 profile: 64 active generations, prefix caching, 4480-token "
        "context selected to fit 64 full contexts in VRAM.",
        hf_id=GEMMA4,
        settings={
            **_seqs(64),
            "VLLM_MAX_MODEL_LEN": "4480",
            "VLLM_ENABLE_PREFIX_CACHING": "1",
            "VLLM_DTYPE": "bfloat16",
        },
    ),
    "gemma4-12b-it-int4-autoround-c8-gmem096": Lab(
        "rejected-startup-memory",
        "text,image",
        "Same as c8 but gpu_memory_utilization=0.96; rejected after engine startup failure near "
        "the VRAM boundary.",
        hf_id=GEMMA4,
        settings={"VLLM_GPU_MEMORY_UTILIZATION": "0.96"},
    ),
    "gemma4-12b-it-int4-autoround-c8-gmem097": Lab(
        "rejected-startup-memory",
        "text,image",
        "Same as c8 but gpu_memory_utilization=0.97; rejected because startup free VRAM was below "
        "requested utilization.",
        hf_id=GEMMA4,
        settings={"VLLM_GPU_MEMORY_UTILIZATION": "0.97"},
    ),
    "gemma4-12b-it-int4-autoround-c8-cs1-8": Lab(
        "rejected-device-lost",
        "text,image",
        "Same as c8 but compile_sizes=[1,8]; rejected after IGC fallback compile and "
        "UR_RESULT_ERROR_DEVICE_LOST during repeat validation.",
        hf_id=GEMMA4,
        settings={"VLLM_COMPILATION_CONFIG": json.dumps({**C8_COMPILE, "compile_sizes": [1, 8]})},
    ),
    "gemma4-12b-it-int4-autoround-c8-xpugraph-mbt2048": Lab(
        "rejected-device-lost",
        "text,image",
        "Same as c8 graph but max_num_batched_tokens=2048; gained KV headroom but hit "
        "UR_RESULT_ERROR_DEVICE_LOST during canary/sampling.",
        hf_id=GEMMA4,
        settings={"VLLM_MAX_NUM_BATCHED_TOKENS": "2048"},
    ),
    "gemma4-12b-it-int4-autoround-c8-nolog": Lab(
        "experiment-nolog",
        "text,image",
        "Same as c8 but frontdoor event logging disabled; quality matched but no clear throughput "
        "win.",
        hf_id=GEMMA4,
        settings={"FRONTDOOR_LOG_EVENTS": "0"},
    ),
    "qwen36-27b-fp8-vrfai": Lab(
        "rejected-diagnostic",
        "text",
        "Do not use as a recommended lane. It only worked here with an opt-in BF16 dequant "
        "fallback for a failing XPU FP8 primitive.",
        settings={"VLLM_MAX_MODEL_LEN": "4096"},
    ),
    "qwen36-35b-a3b-fp8": Lab(
        "blocked-native-xpu-fp8",
        "text,image",
        "Official FP8 checkpoint is interesting, but the current local XPU path lacks native "
        "block-FP8 W8A8 support.",
    ),
    "qwen3-vl-30b-a3b-fp8": Lab(
        "blocked-native-xpu-fp8",
        "text,image",
        "Multimodal FP8 candidate, blocked by the same native XPU block-FP8 concern until proven "
        "otherwise.",
    ),
}

#: The "Same as c8 but X" rows: the one key each changes. Everything else must be c8's.
SAME_AS_C8 = {
    "gemma4-12b-it-int4-autoround-c8-gmem096": "VLLM_GPU_MEMORY_UTILIZATION",
    "gemma4-12b-it-int4-autoround-c8-gmem097": "VLLM_GPU_MEMORY_UTILIZATION",
    "gemma4-12b-it-int4-autoround-c8-cs1-8": "VLLM_COMPILATION_CONFIG",
    "gemma4-12b-it-int4-autoround-c8-xpugraph-mbt2048": "VLLM_MAX_NUM_BATCHED_TOKENS",
    "gemma4-12b-it-int4-autoround-c8-nolog": "FRONTDOOR_LOG_EVENTS",
}
IDENTITY = {"MODEL_SLOT_NAME", "MODEL_SLOT_TITLE", "MODEL_SLOT_STATUS", "MODEL_SLOT_PURPOSE"}


def _value(profile: Profile, key: str) -> str:
    value = profile.get(key)
    if key == "VLLM_COMPILATION_CONFIG" and value:
        return json.dumps(json.loads(value))  # compare the JSON, not its spacing
    return value


def test_every_lab_profile_ships_and_nothing_else_but_the_cpu_ones() -> None:
    names = set(SHIPPED.names())
    assert set(LAB) <= names
    assert names - set(LAB) == {"cpu-smollm2-135m", "cpu-tiny"}


@pytest.mark.parametrize("name", sorted(LAB))
def test_profile_matches_the_lab(name: str) -> None:
    lab, profile = LAB[name], SHIPPED.load(name)
    assert (profile.status, profile.modalities, profile.purpose) == (
        lab.status,
        lab.modalities,
        lab.purpose,
    )
    # Where the lab names no checkpoint, none is invented.
    assert profile.hf_id == lab.hf_id
    for key, expected in lab.settings.items():
        assert _value(profile, key) == expected, f"{name}: {key}"


def test_the_production_compile_config_is_the_labs() -> None:
    assert json.loads(SHIPPED.load(C8).get("VLLM_COMPILATION_CONFIG")) == C8_COMPILE


def test_lab_image_profiles_are_not_loaded_language_model_only() -> None:
    """Gemma 3 is "a Gemma 3 image+text model": no image profile drops its vision tower."""
    for name, lab in LAB.items():
        if "image" in lab.modalities:
            assert SHIPPED.load(name).get("VLLM_LANGUAGE_MODEL_ONLY") in ("", "0"), name


@pytest.mark.parametrize("name", sorted(SAME_AS_C8))
def test_same_as_c8_variants_change_only_what_the_lab_says(name: str) -> None:
    c8, variant = SHIPPED.load(C8).env, SHIPPED.load(name).env
    changed = {
        key for key in (c8.keys() | variant.keys()) - IDENTITY if c8.get(key) != variant.get(key)
    }
    assert changed == {SAME_AS_C8[name]}


def test_list_wide_prints_the_labs_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lab's columns (Profile, Status, Modalities, Purpose), one row per lab profile."""
    monkeypatch.setenv("MODEL_SLOT_PROFILES_DIR", str(REPO / "profiles"))
    assert main(["list", "--wide"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "STATUS", "MODALITIES", "PURPOSE"]
    rows = {fields[0]: tuple(fields[1:]) for fields in (line.split(None, 3) for line in lines)}
    for name, lab in LAB.items():
        assert rows[name] == (lab.status, lab.modalities, lab.purpose), name


def test_the_table_is_the_lab_readmes_own() -> None:
    """Status, modalities and purpose of every row of the lab's "Current Profiles" table, and the
    checkpoints, as the README spells them. Opt-in: the README lives outside the repository."""
    path = os.environ.get("MODEL_SLOT_LAB_README")
    if not path:
        pytest.skip("set MODEL_SLOT_LAB_README to the lab's README (../shared/seed/...)")
    text = Path(path).read_text(encoding="utf-8")
    table = text.split("Profile Status Modalities Purpose\n", 1)[1].split("\n\n", 1)[0]
    rows = {
        fields[0]: Lab(fields[1], fields[2], fields[3])
        for fields in (line.split(" ", 3) for line in table.splitlines())
    }
    assert rows.keys() == LAB.keys()
    for name, lab in LAB.items():
        assert (lab.status, lab.modalities, lab.purpose) == (
            rows[name].status,
            rows[name].modalities,
            rows[name].purpose,
        ), name
        if lab.hf_id:
            assert lab.hf_id in text, name
