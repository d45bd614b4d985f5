"""The lab's deterministic quality canaries (the ``canary`` command: ``cli/canary.py``).

Four cases, each a chat completion at temperature 0, top_p 1 and a fixed seed:

    exact_ok          "Reply with exactly: OK"                        -> "ok"
    copy_phrase       copy "satin cobalt orbit"                       -> contains the phrase
    small_arithmetic  3 red cubes + 4 blue cubes                      -> 7 (or "seven")
    red_image         a 1x1 red PNG as a data URL (image profiles)    -> "red"

Every result keeps the content, its normalized form, the sha256 of the content, the usage and
whether the expected answer came. A baseline (a saved canary result) adds a per-case hash
comparison: the same model, settings and profile must give the same bytes. ``--expect
baseline`` is for tiny models whose answers mean nothing: only the hashes count.
``--repeat N`` runs every case N times; each run must match the first (and the baseline).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrator.errors import ModelSlotError
from orchestrator.evidence.bench.runner import no_model, server_info
from orchestrator.progress import Progress, note

KIND = "model-slot-canary"
SEED = 1234
MAX_TOKENS = 32


def _png_1x1(rgb: tuple[int, int, int]) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00" + bytes(rgb))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


RED_PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(_png_1x1((255, 0, 0))).decode()


def normalize(text: str) -> str:
    """Lowercase, whitespace collapsed, surrounding quotes and punctuation dropped."""
    collapsed = " ".join(text.lower().split())
    return collapsed.strip(" \t\"'`.,!?:;*()[]{}")


@dataclass(frozen=True)
class Case:
    name: str
    prompt: str
    expected: str  # what a pass looks like, for people
    check: Callable[[str], bool]  # on the normalized content
    image: bool = False


CASES: tuple[Case, ...] = (
    Case("exact_ok", "Reply with exactly: OK", "OK", lambda n: n == "ok"),
    Case(
        "copy_phrase",
        "Copy this phrase exactly, and nothing else: satin cobalt orbit",
        "satin cobalt orbit",
        lambda n: "satin cobalt orbit" in n,
    ),
    Case(
        "small_arithmetic",
        "I have 3 red cubes and 4 blue cubes. How many cubes do I have in total? "
        "Answer with just the number.",
        "7",
        lambda n: re.search(r"\b(7|seven)\b", n) is not None,
    ),
    Case(
        "red_image",
        "What colour is this image? Answer with one word.",
        "red",
        lambda n: re.search(r"\bred\b", n) is not None,
        image=True,
    ),
)


@dataclass
class CaseResult:
    case: str
    run: int
    success: bool = False  # the request itself worked
    error: str | None = None
    content: str = ""
    normalized: str = ""
    sha256: str = ""
    usage: dict[str, Any] | None = None
    expected: str = ""
    expected_pass: bool = False
    baseline_sha256: str | None = None
    baseline: str = "none"  # match | mismatch | missing | none (no baseline given)
    stable: bool = True  # same hash as this case's first run

    def failures(self, expect: str) -> list[str]:
        where = f"{self.case} (run {self.run})"
        if not self.success:
            return [f"{where}: request failed: {self.error}"]
        problems = []
        if expect == "answers" and not self.expected_pass:
            problems.append(f"{where}: expected {self.expected!r}, got {self.content!r}")
        if self.baseline in ("mismatch", "missing"):
            problems.append(
                f"{where}: baseline {self.baseline}: sha256 {self.sha256[:12]} vs "
                f"{(self.baseline_sha256 or '-')[:12]}; content {self.content!r}"
            )
        if not self.stable:
            problems.append(f"{where}: differs from run 1: {self.content!r}")
        return problems


def request_body(model: str, case: Case, settings: dict[str, Any]) -> dict[str, Any]:
    content: Any = case.prompt
    if case.image:
        content = [
            {"type": "text", "text": case.prompt},
            {"type": "image_url", "image_url": {"url": RED_PNG_DATA_URL}},
        ]
    return {"model": model, "messages": [{"role": "user", "content": content}], **settings}


def default_settings() -> dict[str, Any]:
    return {"temperature": 0.0, "top_p": 1.0, "seed": SEED, "max_tokens": MAX_TOKENS}


async def run_case(
    client: httpx.AsyncClient,
    base_url: str,
    model: str,
    case: Case,
    *,
    run: int,
    settings: dict[str, Any],
) -> CaseResult:
    """One case, one request. Never raises."""
    result = CaseResult(case=case.name, run=run, expected=case.expected)
    url = base_url.rstrip("/") + "/v1/chat/completions"
    try:
        response = await client.post(url, json=request_body(model, case, settings))
        if response.status_code != 200:
            result.error = f"HTTP {response.status_code}: {response.text[:300]}"
            return result
        data = response.json()
        content = data["choices"][0]["message"].get("content") or ""
        usage = data.get("usage")
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:300]
        return result
    result.success = True
    result.content = str(content)
    result.normalized = normalize(result.content)
    result.sha256 = hashlib.sha256(result.content.encode()).hexdigest()
    result.usage = usage if isinstance(usage, dict) else None
    result.expected_pass = case.check(result.normalized)
    if result.usage is None:
        result.success = False
        result.error = "no usage in the response"
    return result


def baseline_hashes(document: dict[str, Any]) -> dict[str, str]:
    hashes = document.get("hashes")
    if document.get("kind") != KIND or not isinstance(hashes, dict):
        raise ModelSlotError("not a canary result: a baseline is a file saved by `canary`")
    return {str(key): str(value) for key, value in hashes.items()}


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelSlotError(f"baseline {path}: {exc}") from None
    if not isinstance(document, dict):
        raise ModelSlotError(f"baseline {path}: not a canary result")
    baseline_hashes(document)
    return document


@dataclass
class CanaryConfig:
    base_url: str
    model: str | None = None
    image: bool | None = None  # None: from /status modalities
    repeat: int = 1
    expect: str = "answers"  # answers | baseline
    baseline: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=default_settings)
    timeout_s: float = 300.0
    saving_baseline: bool = False  # --expect baseline with no baseline yet: this run makes it


@dataclass(frozen=True)
class CanaryRun:
    """Every case of one ``canary`` run; ``to_json`` is the saved document (a baseline)."""

    started_at: str
    base_url: str
    model: str
    profile: dict[str, Any] | None
    settings: dict[str, Any]
    expect: str
    repeat: int
    skipped: dict[str, str]
    baseline_model: str | None
    hashes: dict[str, str]
    results: list[CaseResult]
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": 1,
            "started_at": self.started_at,
            "base_url": self.base_url,
            "model": self.model,
            "profile": self.profile,
            "settings": self.settings,
            "expect": self.expect,
            "repeat": self.repeat,
            "skipped": self.skipped,
            "baseline_model": self.baseline_model,
            "hashes": self.hashes,
            "results": [asdict(result) for result in self.results],
            "failures": self.failures,
            "passed": self.passed,
        }


async def run_canary(config: CanaryConfig, progress: Progress) -> CanaryRun:
    """Run the cases ``repeat`` times; the document says what passed and why not."""
    if config.expect == "baseline" and config.baseline is None and not config.saving_baseline:
        raise ModelSlotError(
            "--expect baseline needs --baseline FILE (save one with --save-baseline)"
        )
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    async with httpx.AsyncClient(timeout=config.timeout_s) as client:
        info = await server_info(client, config.base_url)
        model = config.model or info["model"]
        if not model:
            raise no_model(config.base_url, info)
        status = info["status"] if isinstance(info["status"], dict) else None
        profile = status.get("model_slot") if status else None
        image = config.image
        if image is None:
            image = "image" in str((profile or {}).get("modalities", "")).split(",")
        cases = [case for case in CASES if image or not case.image]
        expected = baseline_hashes(config.baseline) if config.baseline else None
        results: list[CaseResult] = []
        first: dict[str, str] = {}
        total = config.repeat * len(cases)
        for run in range(1, config.repeat + 1):
            for case in cases:
                result = await run_case(
                    client, config.base_url, model, case, run=run, settings=config.settings
                )
                if result.success:
                    first.setdefault(case.name, result.sha256)
                    result.stable = first[case.name] == result.sha256
                    if expected is not None:
                        result.baseline_sha256 = expected.get(case.name)
                        if result.baseline_sha256 is None:
                            result.baseline = "missing"
                        else:
                            same = result.baseline_sha256 == result.sha256
                            result.baseline = "match" if same else "mismatch"
                results.append(result)
                progress(note(f"canary run {run}/{config.repeat} {case.name}", len(results), total))
    failures = [problem for result in results for problem in result.failures(config.expect)]
    skipped = [case.name for case in CASES if case not in cases]
    baseline_model = (config.baseline or {}).get("model")
    return CanaryRun(
        started_at=started,
        base_url=config.base_url,
        model=model,
        profile=profile if isinstance(profile, dict) else None,
        settings=config.settings,
        expect=config.expect,
        repeat=config.repeat,
        skipped=dict.fromkeys(skipped, "not an image profile"),
        baseline_model=None if baseline_model is None else str(baseline_model),
        hashes=dict(first),
        results=results,
        failures=failures,
    )
