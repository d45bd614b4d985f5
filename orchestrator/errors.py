"""Every error the orchestrator reports on purpose.

    ModelSlotError                 base; ``str(err)`` is the operator-facing message
    ├── ProfileError               one or more problems in profile files (file, line, key, value)
    ├── PreflightError             a switch refused before the running model was touched
    ├── SlotError                  the model container could not be created, stopped or read
    │   └── NotReadyError          a container that did not become ready (exit, timeout, probe)
    ├── SwitchFailedError          a switch that ran but did not end on the new profile
    │                              (``report`` says whether the previous one was restored)
    ├── FrontdoorError             the frontdoor's admin API refused or could not be reached
    ├── BusyError                  another writer holds the slot lock
    ├── ControlError               the controller's control socket failed mid-conversation
    └── ImageError                 an image, base or wheelhouse step failed (orchestrator/images)

Each carries enough to say what failed and what to do next; the CLI prints ``str(err)`` to
stderr and exits non-zero, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ModelSlotError(Exception):
    """Base of every deliberate error. The message is written for the operator."""


@dataclass(frozen=True)
class ProfileProblem:
    """One located problem in one profile file."""

    path: Path
    line: int | None
    key: str | None
    value: str | None
    message: str
    hint: str | None = None

    def render(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        what = ""
        if self.key is not None:
            what = f" {self.key}" + (f"={self.value}" if self.value is not None else "")
        text = f"{where}:{what}: {self.message}" if what else f"{where}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ProfileError(ModelSlotError):
    """A profile that cannot be used. Lists every problem found, each with its location."""

    def __init__(self, problems: list[ProfileProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(problem.render() for problem in problems))


class PreflightError(ModelSlotError):
    """The switch was refused before anything on the host changed."""


class SlotError(ModelSlotError):
    """The model container could not be managed as asked."""


class NotReadyError(SlotError):
    """A model container that did not become ready; ``log_tail`` holds its last log lines."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(message)


class SwitchFailedError(ModelSlotError):
    """The new profile did not become ready. ``report`` is the switch report (a dict): its
    ``outcome`` is ``rolled-back`` (the previous profile serves again) or ``failed``."""

    def __init__(self, message: str, report: dict[str, object]) -> None:
        self.report = report
        super().__init__(message)


class ControlError(ModelSlotError):
    """The controller's control socket broke off or answered nonsense."""


class FrontdoorError(ModelSlotError):
    """The frontdoor's admin API refused a call or could not be reached."""


class BusyError(ModelSlotError):
    """Another switch, stop or controller holds the slot."""


class ImageError(ModelSlotError):
    """Building a base image, a wheelhouse or an image failed."""
