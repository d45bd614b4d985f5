"""Profiles: parsing, inheritance, validation messages, and every shipped profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import ProfileError
from orchestrator.profiles.store import ProfileStore, parse_file, suggest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ProfileStore(REPO / "profiles")

BASE = """\
MODEL_SLOT_TITLE=Base
MODEL_SLOT_STATUS=research
MODEL_SLOT_IMAGE=modelslot/vllm-cpu:local
VLLM_SERVED_MODEL_NAME=base
VLLM_MAX_MODEL_LEN=2048
"""


def write(directory: Path, name: str, text: str) -> None:
    (directory / f"{name}.env").write_text(text)


def problems_of(store: ProfileStore, name: str) -> str:
    with pytest.raises(ProfileError) as info:
        store.load(name)
    return str(info.value)


# -- every shipped profile -------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED.names())
def test_shipped_profile_loads_and_builds_argv(name: str) -> None:
    profile = SHIPPED.load(name)
    command = profile.serve_command()
    assert command[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert "--served-model-name" in command
    assert profile.max_model_len >= 16


# The lab's own values (status, modalities, checkpoints, settings): tests/unit/test_lab_profiles.py


def test_derived_variants_extend_instead_of_copying() -> None:
    for name in SHIPPED.names():
        if name.startswith("gemma4-12b-it-int4-autoround-"):
            assert len(SHIPPED.load(name).chain) > 1, f"{name} should use MODEL_SLOT_EXTENDS"
    text = (REPO / "profiles" / "gemma4-12b-it-int4-autoround-c10.env").read_text()
    assert "MODEL_DIR" not in text and "VLLM_COMPILATION_CONFIG" not in text


def test_production_profile_has_the_lab_settings() -> None:
    p = SHIPPED.load("gemma4-12b-it-int4-autoround-c8")
    assert p.max_model_len == 32768
    assert p.get("VLLM_MAX_NUM_SEQS") == "8"
    limits = p.frontdoor_limits()
    assert limits["max_active_generations"] == 8
    assert limits["queue_timeout_s"] == 0.0
    for key in (
        "XPU_GRAPH",
        "VLLM_XPU_ENABLE_XPU_GRAPH",
        "VLLM_XPU_FORCE_GRAPH_WITH_COMM",
        "VLLM_XPU_GRAPH_NOOP_COMM_CAPTURE",
    ):
        assert p.env[key] == "1"
        assert p.container_env()[key] == "1"
    assert json.loads(p.get("VLLM_COMPILATION_CONFIG")) == {
        "use_inductor_graph_partition": True,
        "compile_sizes": [1],
        "cudagraph_mode": "PIECEWISE",
    }
    assert "--enable-prefix-caching" in p.serve_command()


def test_c64_argv() -> None:
    argv = SHIPPED.load("gemma4-12b-it-int4-autoround-c64").serve_command()
    assert argv[argv.index("--max-model-len") + 1] == "4480"
    assert argv[argv.index("--max-num-seqs") + 1] == "64"


def test_host_paths_use_the_model_root_not_a_home_directory() -> None:
    for name in SHIPPED.names():
        profile = SHIPPED.load(name)
        raw = profile.get("MODEL_DIR")
        assert not raw.startswith(("~", "/home", "/root")), name
        model_dir = profile.model_dir(Path("/models"))
        assert model_dir is None or model_dir.is_relative_to("/models"), name


def test_cpu_profiles_load_two_different_real_models() -> None:
    cpu = [SHIPPED.load(n) for n in SHIPPED.names() if n.startswith("cpu-")]
    assert len({p.get("VLLM_MODEL") for p in cpu}) >= 2
    for profile in cpu:
        assert profile.devices == ()
        assert profile.model_dir(Path("/models")) is None  # the image carries the model


# -- parsing ---------------------------------------------------------------------------------


def test_values_are_literal_like_docker_env_files(tmp_path: Path) -> None:
    write(tmp_path, "p", BASE + 'MODEL_SLOT_PURPOSE="quoted" $HOME `x` # not a comment\n')
    profile = ProfileStore(tmp_path).load("p")
    assert profile.purpose == '"quoted" $HOME `x` # not a comment'


def test_comments_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "p", "# hello\n\n   # indented comment\n" + BASE)
    assert ProfileStore(tmp_path).load("p").title == "Base"


def test_bare_key_is_refused_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, "p", BASE + "HOME\n")
    message = problems_of(ProfileStore(tmp_path), "p")
    assert "p.env:6: HOME" in message and "KEY=VALUE" in message


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    write(tmp_path, "p", BASE + "VLLM_MAX_MODEL_LEN=4096\n")
    message = problems_of(ProfileStore(tmp_path), "p")
    assert ":6: VLLM_MAX_MODEL_LEN=4096: set twice (first on line 5)" in message


def test_parse_file_keeps_line_numbers(tmp_path: Path) -> None:
    write(tmp_path, "p", "# c\nA=1\n\nB=2=3\n")
    parsed = parse_file(tmp_path / "p.env")
    assert [(e.key, e.value, e.line) for e in parsed.entries] == [("A", "1", 2), ("B", "2=3", 4)]


# -- validation messages ---------------------------------------------------------------------


def test_misspelt_key_is_located_with_a_hint(tmp_path: Path) -> None:
    write(tmp_path, "p", BASE + "VLLM_MAX_NUM_SEQ=8\n")
    message = problems_of(ProfileStore(tmp_path), "p")
    assert "p.env:6: VLLM_MAX_NUM_SEQ=8: unknown key (did you mean VLLM_MAX_NUM_SEQS?)" in message


def test_unknown_prefixed_key_without_close_match_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "p", BASE + "FRONTDOOR_COLOUR=blue\n")
    assert "FRONTDOOR_COLOUR=blue: unknown key" in problems_of(ProfileStore(tmp_path), "p")


def test_other_keys_and_vllm_environment_pass_through(tmp_path: Path) -> None:
    extra = "CCL_ZE_IPC_EXCHANGE=pidfd\nVLLM_CPU_KVCACHE_SPACE=1\nVLLM_XPU_NEW_SWITCH=1\n"
    write(tmp_path, "p", BASE + extra)
    env = ProfileStore(tmp_path).load("p").container_env()
    assert env["CCL_ZE_IPC_EXCHANGE"] == "pidfd"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["VLLM_XPU_NEW_SWITCH"] == "1"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("VLLM_MAX_NUM_SEQS=eight", "expected a whole number >= 1"),
        ("VLLM_GPU_MEMORY_UTILIZATION=1.5", "expected a number from 0.05 to 1.0"),
        ("VLLM_ENABLE_PREFIX_CACHING=yes", "expected 1 or 0"),
        ("VLLM_COMPILATION_CONFIG={broken", "expected a JSON object (not JSON"),
        ("VLLM_COMPILATION_CONFIG=[1]", "expected a JSON object"),
        ('VLLM_EXTRA_ARGS=["--a", 1]', "expected a JSON array of strings"),
        ("VLLM_EXTRA_ARGS=--seed 0", "expected a JSON array of strings (not JSON"),
        ("MODEL_SLOT_STATUS=great", "experiment-*/rejected-*/blocked-*"),
        ("MODEL_SLOT_MODALITIES=image", "expected text or text,image"),
        ("MODEL_SLOT_DEVICES=dri", "a comma list of /dev paths"),
        ("MODEL_SLOT_SHM_SIZE=lots", "a size such as 16g"),
        ("FRONTDOOR_QUEUE_TIMEOUT_S=-1", "a number >= 0"),
        ("VLLM_CPU_OMP_THREADS_BIND=core1", "auto, nobind, or CPU ids such as 1, 0-3"),
        ("VLLM_CPU_OMP_THREADS_BIND=3-1", "auto, nobind, or CPU ids"),
        ("VLLM_CPU_OMP_THREADS_BIND=0-3|3-5", "no CPU in two ranks (CPU 3 is)"),
        ("VLLM_CPU_NUM_OF_RESERVED_CPU=-1", "a whole number >= 0"),
        ("VLLM_CPU_KVCACHE_SPACE=1g", "a whole number >= 0"),
    ],
)
def test_bad_values_name_the_key_value_and_what_is_allowed(
    tmp_path: Path, line: str, expected: str
) -> None:
    body = "\n".join(
        row for row in BASE.splitlines() if not row.startswith(line.split("=", maxsplit=1)[0])
    )
    write(tmp_path, "p", body + "\n" + line + "\n")
    message = problems_of(ProfileStore(tmp_path), "p")
    assert line in message
    assert expected in message


@pytest.mark.parametrize("value", ["auto", "nobind", "1", "0-3", "0,2-5", "0-3|4-7"])
def test_vllm_cpu_binding_accepts_what_vllm_cpu_does(tmp_path: Path, value: str) -> None:
    write(tmp_path, "p", BASE + f"VLLM_CPU_OMP_THREADS_BIND={value}\n")
    env = ProfileStore(tmp_path).load("p").container_env()
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == value  # vLLM reads it itself


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "p", BASE + "VLLM_DTYPE=bf16\nVLLM_MAX_NUM_SEQ=1\nOOPS\n")
    message = problems_of(ProfileStore(tmp_path), "p")
    assert message.count("p.env:") == 3


def test_name_must_match_the_file(tmp_path: Path) -> None:
    write(tmp_path, "p", BASE + "MODEL_SLOT_NAME=other\n")
    assert "must equal the file's stem 'p'" in problems_of(ProfileStore(tmp_path), "p")


def test_missing_required_keys_after_inheritance(tmp_path: Path) -> None:
    write(tmp_path, "p", "MODEL_SLOT_TITLE=x\nMODEL_SLOT_STATUS=research\n")
    message = problems_of(ProfileStore(tmp_path), "p")
    for key in ("MODEL_SLOT_IMAGE", "VLLM_SERVED_MODEL_NAME", "VLLM_MAX_MODEL_LEN"):
        assert f"{key}: missing after inheritance" in message


def test_output_default_above_cap_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p",
        BASE + "FRONTDOOR_DEFAULT_MAX_OUTPUT_TOKENS=900\nFRONTDOOR_MAX_OUTPUT_TOKENS=100\n",
    )
    assert "is above FRONTDOOR_MAX_OUTPUT_TOKENS=100" in problems_of(ProfileStore(tmp_path), "p")


def test_unknown_profile_suggests_a_name(tmp_path: Path) -> None:
    write(tmp_path, "gemma", BASE)
    assert "did you mean gemma?" in problems_of(ProfileStore(tmp_path), "gema")


# -- inheritance -----------------------------------------------------------------------------


def test_derived_profile_overrides_its_base(tmp_path: Path) -> None:
    write(tmp_path, "base", BASE + "VLLM_MAX_NUM_SEQS=4\n")
    write(tmp_path, "mid", "MODEL_SLOT_EXTENDS=base\nVLLM_MAX_NUM_SEQS=8\n")
    write(tmp_path, "leaf", "MODEL_SLOT_EXTENDS=mid\nMODEL_SLOT_TITLE=Leaf\n")
    leaf = ProfileStore(tmp_path).load("leaf")
    assert leaf.chain == ("leaf", "mid", "base")
    assert leaf.get("VLLM_MAX_NUM_SEQS") == "8"
    assert leaf.origin["VLLM_MAX_NUM_SEQS"] == "mid"
    assert leaf.title == "Leaf"
    assert leaf.env["MODEL_SLOT_NAME"] == "leaf"
    assert "MODEL_SLOT_EXTENDS" not in leaf.env


def test_hash_changes_with_any_resolved_value(tmp_path: Path) -> None:
    write(tmp_path, "base", BASE)
    write(tmp_path, "a", "MODEL_SLOT_EXTENDS=base\n")
    write(tmp_path, "b", "MODEL_SLOT_EXTENDS=base\nVLLM_MAX_NUM_SEQS=2\n")
    store = ProfileStore(tmp_path)
    assert store.load("a").hash != store.load("b").hash
    assert store.load("a").hash == store.load("a").hash


def test_inheritance_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a", "MODEL_SLOT_EXTENDS=b\n")
    write(tmp_path, "b", "MODEL_SLOT_EXTENDS=a\n")
    assert "inheritance cycle: a -> b -> a" in problems_of(ProfileStore(tmp_path), "a")


def test_missing_base_is_refused_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, "base", BASE)
    write(tmp_path, "a", "# x\nMODEL_SLOT_EXTENDS=bsae\n")
    message = problems_of(ProfileStore(tmp_path), "a")
    assert "a.env:2: MODEL_SLOT_EXTENDS=bsae: no such base profile" in message
    assert "did you mean base?" in message


def test_problems_in_a_base_are_reported_from_the_derived_profile(tmp_path: Path) -> None:
    write(tmp_path, "base", BASE + "VLLM_DTYPE=fp7\n")
    write(tmp_path, "a", "MODEL_SLOT_EXTENDS=base\n")
    assert "base.env:6: VLLM_DTYPE=fp7" in problems_of(ProfileStore(tmp_path), "a")


def test_frontdoor_keys_do_not_reach_the_model_container(tmp_path: Path) -> None:
    write(tmp_path, "p", BASE + "FRONTDOOR_MAX_ACTIVE_GENERATIONS=3\nMODEL_DIR=m\n")
    profile = ProfileStore(tmp_path).load("p")
    env = profile.container_env()
    assert not any(key.startswith("FRONTDOOR_") for key in env)
    assert "MODEL_DIR" not in env
    assert profile.frontdoor_limits()["max_active_generations"] == 3
    assert profile.model_dir(Path("/models")) == Path("/models/m")


def test_a_missing_profile_suggests_the_ones_with_all_its_words() -> None:
    known = ProfileStore(REPO / "profiles").names()
    hint = suggest("gemma4-12b-c8", known)
    assert hint.startswith("did you mean gemma4-12b-it-int4-autoround-c8 or ")  # shortest first
    assert "(and 3 more)" in hint
    assert suggest("cpu-smolm", known) == "did you mean cpu-smollm2-135m?"  # spelling
    assert suggest("zzz", known) == "`python -m orchestrator list`"


def test_the_queue_depth_is_sent_with_the_route_default_64_and_per_profile(
    tmp_path: Path,
) -> None:
    """The frontdoor bounds its generation queue by the route's ``max_queued_generations``;
    the orchestrator sends FRONTDOOR_MAX_QUEUED_GENERATIONS with the profile's other limits."""
    write(tmp_path, "p", BASE)
    write(tmp_path, "q", BASE + "FRONTDOOR_MAX_QUEUED_GENERATIONS=0\n")
    store = ProfileStore(tmp_path)
    assert store.load("p").frontdoor_limits()["max_queued_generations"] == 64
    assert store.load("q").frontdoor_limits()["max_queued_generations"] == 0


@pytest.mark.parametrize("name", SHIPPED.names())
def test_every_shipped_profiles_limits_are_accepted_by_the_frontdoor(name: str) -> None:
    """The two ends of PUT /admin/route agree: the frontdoor's ``Limits`` forbids unknown keys,
    so a key the orchestrator sends that the frontdoor does not know fails here, not at a switch."""
    from frontdoor.route import Limits

    limits = Limits.model_validate(SHIPPED.load(name).frontdoor_limits())
    assert limits.max_queued_generations >= 0
