"""CPU id lists (``orchestrator/cpus.py``) and the host's ``MODEL_SLOT_CPUSET`` setting."""

from __future__ import annotations

import pytest

from orchestrator import cpus
from orchestrator.errors import SlotError
from orchestrator.slot.docker_slot import SlotConfig, host_cpus


@pytest.mark.parametrize(
    ("text", "ids", "shortest"),
    [
        ("1", {1}, "1"),
        ("0-3", {0, 1, 2, 3}, "0-3"),
        ("0,2-4,9", {0, 2, 3, 4, 9}, "0,2-4,9"),
        ("3,0,1,2", {0, 1, 2, 3}, "0-3"),
        ("5-5", {5}, "5"),
    ],
)
def test_lists_parse_and_format_as_docker_writes_them(
    text: str, ids: set[int], shortest: str
) -> None:
    assert cpus.parse(text) == ids
    assert cpus.format_ids(cpus.parse(text)) == shortest


@pytest.mark.parametrize(
    ("text", "why"),
    [("", "'' is not a CPU id"), ("0 - 3", "'0 - 3' is not"), ("a", "'a' is not"),
     ("1,", "'' is not"), ("4-2", "runs backwards"), ("-1", "'-1' is not")],
)  # fmt: skip
def test_bad_lists_say_what_is_allowed(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as info:
        cpus.parse(text)
    assert cpus.ALLOWED in str(info.value)


def test_the_setting_is_unset_by_default_and_names_the_cpus_it_chose() -> None:
    assert SlotConfig.from_env({}).cpuset is None
    assert SlotConfig.from_env({"MODEL_SLOT_CPUSET": " "}).cpuset is None
    first = min(host_cpus())
    assert SlotConfig.from_env({"MODEL_SLOT_CPUSET": str(first)}).cpuset == frozenset({first})


def test_a_malformed_setting_is_refused_with_its_name() -> None:
    with pytest.raises(SlotError, match=r"MODEL_SLOT_CPUSET='0:1': '0:1' is not a CPU id"):
        SlotConfig.from_env({"MODEL_SLOT_CPUSET": "0:1"})


def test_cpus_the_host_does_not_have_are_refused_with_those_it_has() -> None:
    have = host_cpus()
    beyond = max(have) + 1
    with pytest.raises(SlotError) as info:
        SlotConfig.from_env({"MODEL_SLOT_CPUSET": f"{min(have)},{beyond}"})
    assert f"this host has no CPU {beyond} (it has {cpus.format_ids(have)})" in str(info.value)
