"""The slot tests' fixtures (a real in-process frontdoor, the CPU profiles), shared here."""

from __future__ import annotations

from tests.slot.conftest import frontdoor, profiles_dir

__all__ = ["frontdoor", "profiles_dir"]
