"""``MODEL_SLOT_WATCHDOG_*``: defaults, per-profile values, and refusals that teach."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.control.watchdog import WatchdogSettings
from orchestrator.errors import ProfileError
from orchestrator.profiles.store import ProfileStore

BASE = """\
MODEL_SLOT_TITLE=Base
MODEL_SLOT_STATUS=research
MODEL_SLOT_IMAGE=modelslot/vllm-cpu:local
VLLM_SERVED_MODEL_NAME=base
VLLM_MAX_MODEL_LEN=2048
"""


def store_with(tmp_path: Path, extra: str) -> ProfileStore:
    (tmp_path / "p.env").write_text(BASE + extra)
    return ProfileStore(tmp_path)


def test_defaults_suit_the_lab(tmp_path: Path) -> None:
    settings = WatchdogSettings.from_profile(store_with(tmp_path, "").load("p"))
    assert settings == WatchdogSettings()  # the schema's defaults and the dataclass's agree
    assert settings.enabled and not settings.restart_on_degraded
    assert (settings.probe_interval_s, settings.wedge_s, settings.restart_budget) == (30, 60, 3)


def test_a_profile_sets_its_own(tmp_path: Path) -> None:
    extra = (
        "MODEL_SLOT_WATCHDOG_PROBE_INTERVAL_S=5\nMODEL_SLOT_WATCHDOG_WEDGE_S=12.5\n"
        "MODEL_SLOT_WATCHDOG_RESTART_BUDGET=0\nMODEL_SLOT_WATCHDOG_RESTART_ON_DEGRADED=1\n"
        "MODEL_SLOT_WATCHDOG_DEGRADED_FRACTION=0.3\nMODEL_SLOT_WATCHDOG_DECODE_TOKENS=0\n"
    )
    settings = WatchdogSettings.from_profile(store_with(tmp_path, extra).load("p"))
    assert settings.probe_interval_s == 5 and settings.wedge_s == 12.5
    assert settings.restart_budget == 0 and settings.restart_on_degraded
    assert settings.degraded_fraction == 0.3 and settings.decode_tokens == 0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("MODEL_SLOT_WATCHDOG_WEDGE_S=0", "expected a number >= 1"),
        ("MODEL_SLOT_WATCHDOG_WEDGE_S=nan", "expected a number >= 1"),
        ("MODEL_SLOT_WATCHDOG_PROBE_INTERVAL_S=inf", "expected a number >= 1"),
        ("MODEL_SLOT_WATCHDOG_RESTART_BUDGET=-1", "expected a whole number >= 0"),
        ("MODEL_SLOT_WATCHDOG_DEGRADED_FRACTION=1.5", "expected a number from 0.01 to 0.99"),
        ("MODEL_SLOT_WATCHDOG=yes", "expected 1 or 0"),
        ("MODEL_SLOT_WATCHDOG_WEDGE=30", "did you mean MODEL_SLOT_WATCHDOG_WEDGE_S?"),
    ],
)
def test_bad_values_are_refused_with_file_line_and_key(
    tmp_path: Path, line: str, expected: str
) -> None:
    store = store_with(tmp_path, line + "\n")
    with pytest.raises(ProfileError) as info:
        store.load("p")
    message = str(info.value)
    assert f"p.env:6: {line}" in message
    assert expected in message
