"""Profiles: parse ``profiles/*.env``, resolve ``MODEL_SLOT_EXTENDS``, validate.

A profile is a Docker env-file: ``KEY=VALUE`` lines and ``#`` comments. Values are taken
literally, as Docker does: no quotes are stripped, nothing is expanded and nothing is executed.
A bare ``KEY`` line (which Docker would fill from the caller's environment) is refused, so a
profile means the same thing on every host.

Everything is validated before anything runs, and every problem is reported with its file,
line, key and value, and what is allowed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import vllm_argv
from orchestrator.errors import ProfileError, ProfileProblem
from orchestrator.profiles import schema

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int


@dataclass(frozen=True)
class ProfileFile:
    """One file as written: its entries in order, with line numbers."""

    name: str
    path: Path
    entries: tuple[Entry, ...]
    problems: tuple[ProfileProblem, ...] = ()  # syntax problems; reported with the rest

    def get(self, key: str) -> Entry | None:
        for entry in self.entries:
            if entry.key == key:
                return entry
        return None


def suggest(name: str, known: list[str]) -> str:
    """A hint for a profile name that does not exist: the profiles whose dash-separated words
    include all of the name's (``gemma4-12b-c8`` finds ``gemma4-12b-it-int4-autoround-c8``,
    shortest first), else the closest spelling, else the command that lists them."""
    words = set(name.split("-"))
    having = sorted((k for k in known if words <= set(k.split("-"))), key=lambda k: (len(k), k))
    if not having:
        having = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not having:
        return "`python -m orchestrator list`"
    more = f" (and {len(having) - 3} more)" if len(having) > 3 else ""
    return f"did you mean {' or '.join(having[:3])}{more}?"


def parse_file(path: Path) -> ProfileFile:
    """Read one env-file. Syntax problems are kept on the result, so that they are reported
    together with the value problems; only an unreadable file raises."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(
            [ProfileProblem(path, None, None, None, "no such profile file")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError([ProfileProblem(path, None, None, None, f"unreadable: {exc}")]) from None
    entries: list[Entry] = []
    problems: list[ProfileProblem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            problems.append(
                ProfileProblem(
                    path,
                    number,
                    key.strip(),
                    None,
                    "a line must be KEY=VALUE",
                    "a bare KEY would take its value from the caller's environment; "
                    "profiles are self-contained",
                )
            )
            continue
        if not _KEY.match(key):
            problems.append(
                ProfileProblem(
                    path,
                    number,
                    key,
                    value,
                    "not a valid variable name",
                    "letters, digits and _ only, not starting with a digit",
                )
            )
            continue
        if key in seen:
            problems.append(
                ProfileProblem(
                    path, number, key, value, f"set twice (first on line {seen[key]})", "keep one"
                )
            )
            continue
        seen[key] = number
        entries.append(Entry(key, value, number))
    return ProfileFile(path.stem, path, tuple(entries), tuple(problems))


def _did_you_mean(key: str) -> str | None:
    candidates = list(schema.KEYS)
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.75)
    return f"did you mean {match[0]}?" if match else None


def check_entries(profile: ProfileFile) -> list[ProfileProblem]:
    """Problems in one file's own lines: unknown keys and bad values."""
    problems: list[ProfileProblem] = list(profile.problems)
    for entry in profile.entries:
        spec = schema.KEYS.get(entry.key)
        if spec is None:
            if schema.is_passthrough(entry.key):
                continue
            hint = _did_you_mean(entry.key) or (
                "see `python -m orchestrator keys` for the known keys; vLLM's own "
                "environment variables pass through"
            )
            problems.append(
                ProfileProblem(
                    profile.path, entry.line, entry.key, entry.value, "unknown key", hint
                )
            )
            continue
        allowed = spec.check(entry.value)
        if allowed is not None:
            problems.append(
                ProfileProblem(
                    profile.path, entry.line, entry.key, entry.value, f"expected {allowed}"
                )
            )
    name = profile.get("MODEL_SLOT_NAME")
    if name is not None and name.value != profile.name:
        problems.append(
            ProfileProblem(
                profile.path,
                name.line,
                name.key,
                name.value,
                f"must equal the file's stem {profile.name!r}",
                f"rename the file or set MODEL_SLOT_NAME={profile.name}",
            )
        )
    return sorted(problems, key=lambda problem: problem.line or 0)


@dataclass(frozen=True)
class Profile:
    """A resolved, validated profile: inheritance applied, defaults filled in."""

    name: str
    path: Path
    chain: tuple[str, ...]  # inheritance chain, this profile first, the root base last
    env: dict[str, str]  # every key as resolved, without defaults
    origin: dict[str, str] = field(default_factory=dict)  # key -> profile that set it

    def get(self, key: str) -> str:
        """The resolved value, else the schema default, else ''."""
        if key in self.env:
            return self.env[key]
        spec = schema.KEYS.get(key)
        return spec.default if spec is not None and spec.default is not None else ""

    # identity ------------------------------------------------------------------------------
    @property
    def title(self) -> str:
        return self.get("MODEL_SLOT_TITLE")

    @property
    def hf_id(self) -> str:
        return self.get("MODEL_SLOT_HF_ID")

    @property
    def modalities(self) -> str:
        return self.get("MODEL_SLOT_MODALITIES")

    @property
    def status(self) -> str:
        return self.get("MODEL_SLOT_STATUS")

    @property
    def purpose(self) -> str:
        return self.get("MODEL_SLOT_PURPOSE")

    @property
    def refused_without_force(self) -> bool:
        return self.status.startswith(schema.REFUSED_STATUS_PREFIXES)

    @property
    def supports_images(self) -> bool:
        return "image" in self.modalities.split(",")

    # container -----------------------------------------------------------------------------
    @property
    def image(self) -> str:
        return self.get("MODEL_SLOT_IMAGE")

    def model_dir(self, model_root: Path) -> Path | None:
        """The host model directory, or None when the image carries the model."""
        raw = self.get("MODEL_DIR")
        if not raw:
            return None
        path = Path(raw)
        return path if path.is_absolute() else model_root / path

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(part for part in self.get("MODEL_SLOT_DEVICES").split(",") if part)

    @property
    def startup_timeout_s(self) -> float:
        return float(self.get("MODEL_SLOT_STARTUP_TIMEOUT_S"))

    @property
    def stop_timeout_s(self) -> float:
        return float(self.get("MODEL_SLOT_STOP_TIMEOUT_S"))

    @property
    def container_port(self) -> int:
        return int(self.get("MODEL_SLOT_CONTAINER_PORT"))

    @property
    def cache_volume(self) -> str:
        return self.get("MODEL_SLOT_CACHE_VOLUME") or f"modelslot-cache-{self.name}"

    # vLLM ----------------------------------------------------------------------------------
    @property
    def served_model_name(self) -> str:
        return self.get("VLLM_SERVED_MODEL_NAME")

    @property
    def max_model_len(self) -> int:
        return int(self.get("VLLM_MAX_MODEL_LEN"))

    def container_env(self) -> dict[str, str]:
        """What the model container gets: everything but host-side and frontdoor keys.

        Defaults that the entrypoint or vLLM need are filled in, so the container does not
        depend on the image's own defaults.
        """
        env = {
            key: value
            for key, value in self.env.items()
            if not key.startswith("FRONTDOOR_") and key not in ("MODEL_DIR", "MODEL_SLOT_EXTENDS")
        }
        env["MODEL_SLOT_NAME"] = self.name
        env.setdefault("VLLM_CACHE_ROOT", self.get("VLLM_CACHE_ROOT"))
        env.setdefault("VLLM_MODEL", self.get("VLLM_MODEL"))
        return env

    def serve_command(self) -> list[str]:
        """The exact argv the image's entrypoint would exec for this profile."""
        return vllm_argv.build_command(self.container_env())

    # frontdoor -----------------------------------------------------------------------------
    def frontdoor_limits(self) -> dict[str, object]:
        """The route limits the frontdoor applies for this profile (the admin API's shape)."""

        def optional_int(key: str) -> int | None:
            value = self.get(key)
            return int(value) if value else None

        kwargs = self.get("FRONTDOOR_CHAT_TEMPLATE_KWARGS_JSON")
        return {
            "max_active_generations": int(self.get("FRONTDOOR_MAX_ACTIVE_GENERATIONS")),
            "queue_timeout_s": float(self.get("FRONTDOOR_QUEUE_TIMEOUT_S")),
            "max_queued_generations": int(self.get("FRONTDOOR_MAX_QUEUED_GENERATIONS")),
            "log_events": self.get("FRONTDOOR_LOG_EVENTS") == "1",
            "default_max_output_tokens": optional_int("FRONTDOOR_DEFAULT_MAX_OUTPUT_TOKENS"),
            "max_output_tokens": optional_int("FRONTDOOR_MAX_OUTPUT_TOKENS"),
            "chat_template_kwargs": json.loads(kwargs) if kwargs else None,
            "rewrite_request_model": self.get("FRONTDOOR_REWRITE_REQUEST_MODEL") == "1",
            "served_model_name": self.served_model_name,
        }

    def metadata(self) -> dict[str, str]:
        return {
            "name": self.name,
            "title": self.title,
            "hf_id": self.hf_id,
            "modalities": self.modalities,
            "status": self.status,
            "purpose": self.purpose,
            "hash": self.hash,
        }

    @property
    def hash(self) -> str:
        """sha256 of the resolved environment; labels the container it runs in."""
        canonical = json.dumps(self.env, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class ProfileStore:
    """The profiles of one directory. Loads, resolves and validates on demand."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(path.stem for path in self.directory.glob("*.env"))

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.env"

    def load(self, name: str) -> Profile:
        """Resolve and validate one profile. Raises ProfileError with every problem found."""
        if not self.path(name).exists():
            hint = suggest(name, self.names())
            raise ProfileError(
                [ProfileProblem(self.path(name), None, None, None, "no such profile", hint)]
            )
        chain = self._chain(name)
        problems: list[ProfileProblem] = []
        for file in chain:
            problems += check_entries(file)
        env: dict[str, str] = {}
        origin: dict[str, str] = {}
        for file in reversed(chain):  # root base first, so derived profiles override
            for entry in file.entries:
                if entry.key in schema.NOT_INHERITED and file is not chain[0]:
                    continue
                env[entry.key] = entry.value
                origin[entry.key] = file.name
        env["MODEL_SLOT_NAME"] = name
        env.pop("MODEL_SLOT_EXTENDS", None)
        problems += self._check_resolved(chain[0], env)
        if problems:
            raise ProfileError(problems)
        return Profile(
            name=name,
            path=chain[0].path,
            chain=tuple(file.name for file in chain),
            env=env,
            origin=origin,
        )

    def load_all(
        self, names: Iterable[str] | None = None
    ) -> tuple[list[Profile], list[ProfileError]]:
        profiles: list[Profile] = []
        errors: list[ProfileError] = []
        for name in self.names() if names is None else names:
            try:
                profiles.append(self.load(name))
            except ProfileError as exc:
                errors.append(exc)
        return profiles, errors

    def _chain(self, name: str) -> list[ProfileFile]:
        """This profile, then its base, then the base's base... Cycles and gaps are errors."""
        chain: list[ProfileFile] = []
        current = name
        while True:
            file = parse_file(self.path(current))
            chain.append(file)
            extends = file.get("MODEL_SLOT_EXTENDS")
            if extends is None:
                return chain
            names = [item.name for item in chain]
            if extends.value in names:
                cycle = " -> ".join([*names, extends.value])
                raise ProfileError(
                    [
                        ProfileProblem(
                            file.path,
                            extends.line,
                            extends.key,
                            extends.value,
                            f"inheritance cycle: {cycle}",
                        )
                    ]
                )
            if not self.path(extends.value).exists():
                match = difflib.get_close_matches(extends.value, self.names(), n=1, cutoff=0.6)
                raise ProfileError(
                    [
                        ProfileProblem(
                            file.path,
                            extends.line,
                            extends.key,
                            extends.value,
                            f"no such base profile in {self.directory}",
                            f"did you mean {match[0]}?" if match else None,
                        )
                    ]
                )
            current = extends.value

    @staticmethod
    def _check_resolved(file: ProfileFile, env: dict[str, str]) -> list[ProfileProblem]:
        problems = [
            ProfileProblem(
                file.path,
                None,
                key,
                None,
                "missing after inheritance",
                f"set it here or in a base: {schema.KEYS[key].help}",
            )
            for key in schema.REQUIRED
            if not env.get(key)
        ]
        default = env.get("FRONTDOOR_DEFAULT_MAX_OUTPUT_TOKENS")
        cap = env.get("FRONTDOOR_MAX_OUTPUT_TOKENS")
        if default and cap and default.isdigit() and cap.isdigit() and int(default) > int(cap):
            problems.append(
                ProfileProblem(
                    file.path,
                    None,
                    "FRONTDOOR_DEFAULT_MAX_OUTPUT_TOKENS",
                    default,
                    f"is above FRONTDOOR_MAX_OUTPUT_TOKENS={cap}",
                )
            )
        try:
            vllm_argv.build_serve_args(env)
        except vllm_argv.ArgvError as exc:
            problems.append(ProfileProblem(file.path, None, None, None, str(exc)))
        return problems
