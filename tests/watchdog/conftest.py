"""The slot tests' fixtures (a real in-process frontdoor, the CPU profiles), shared here."""

from __future__ import annotations

from tests.slot.conftest import frontdoor, module_slot, profiles_dir

__all__ = ["frontdoor", "module_slot", "profiles_dir"]
