"""Prompts of an exact token count, counted by the server that will serve them.

The count is the server's: ``POST /tokenize`` (vLLM's; the frontdoor passes it through), with the
chat template applied for chat prompts, so the count equals the ``prompt_tokens`` the server will
report in its usage. Where ``/tokenize`` is missing, a one-token completion is sent and its
``usage.prompt_tokens`` is read instead (slower, same answer).

A prompt is a *head* (a unique nonce for cold prompts, or a shared prefix and then a nonce) and
filler words. The filler is lengthened or shortened a word at a time until the server's count is
exact; if it cannot be made exact the builder says so rather than guessing.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from orchestrator.errors import ModelSlotError

# Common short words: one token each (with their leading space) in the usual BPE vocabularies,
# and none of them merges with its neighbours across the space.
_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "his",
    "they",
    "be",
    "at",
    "one",
    "have",
    "this",
    "from",
    "or",
    "had",
    "by",
    "word",
    "but",
    "what",
    "some",
    "we",
    "can",
    "out",
    "other",
    "were",
    "all",
    "there",
    "when",
    "up",
    "use",
    "your",
    "how",
    "said",
    "an",
    "each",
    "she",
    "which",
    "do",
    "their",
    "time",
    "if",
    "will",
    "way",
    "about",
    "many",
    "then",
    "them",
    "write",
    "would",
    "like",
    "so",
    "these",
    "her",
    "long",
    "make",
    "thing",
    "see",
    "him",
    "two",
    "has",
    "look",
    "more",
    "day",
    "could",
    "go",
    "come",
    "did",
    "number",
    "sound",
    "no",
    "most",
    "people",
    "my",
    "over",
    "know",
    "water",
    "than",
    "call",
    "first",
    "who",
    "may",
    "down",
    "side",
    "been",
    "now",
    "find",
    "any",
    "new",
    "work",
    "part",
    "take",
    "get",
    "place",
    "made",
    "live",
    "where",
    "after",
    "back",
    "little",
    "only",
    "round",
    "man",
    "year",
    "came",
    "show",
    "every",
    "good",
    "me",
    "give",
    "our",
    "under",
    "name",
    "very",
    "through",
    "just",
    "form",
    "sentence",
    "great",
    "think",
    "say",
    "help",
    "low",
    "line",
    "differ",
    "turn",
    "cause",
    "much",
    "mean",
    "before",
    "move",
    "right",
    "boy",
    "old",
    "too",
    "same",
    "tell",
    "does",
    "set",
    "three",
    "want",
    "air",
    "well",
    "also",
    "play",
    "small",
    "end",
    "put",
    "home",
    "read",
    "hand",
    "port",
    "large",
    "spell",
    "add",
    "even",
    "land",
    "here",
    "must",
    "big",
    "high",
    "such",
    "follow",
    "act",
    "why",
    "ask",
    "men",
    "change",
    "went",
    "light",
    "kind",
    "off",
    "need",
    "house",
    "picture",
    "try",
    "us",
    "again",
    "animal",
    "point",
    "mother",
    "world",
    "near",
    "build",
    "self",
    "earth",
    "father",
    "head",
    "stand",
    "own",
    "page",
    "should",
    "country",
    "found",
]

_MAX_ROUNDS = 24


class WorkloadError(ModelSlotError):
    """A prompt could not be built to the requested shape."""


class TokenCounter(Protocol):
    async def count(self, text: str, *, chat: bool) -> int: ...


@dataclass(frozen=True)
class Prompt:
    text: str  # the completion prompt, or the user message's content for chat
    tokens: int  # as the server counts them (chat: with the template applied)


def nonce() -> str:
    return secrets.token_hex(6)


def messages(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


class ServerTokenizer:
    """Counts tokens with the server's ``/tokenize``, else with a one-token completion's usage."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, model: str) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._model = model
        self._tokenize: bool | None = None  # unknown until the first call
        self.calls = 0

    async def count(self, text: str, *, chat: bool) -> int:
        self.calls += 1
        if self._tokenize is not False:
            body: dict[str, Any] = {"model": self._model}
            if chat:
                body["messages"] = messages(text)
            else:
                body["prompt"] = text
            try:
                response = await self._client.post(f"{self._base}/tokenize", json=body)
            except httpx.HTTPError as exc:
                raise WorkloadError(f"POST {self._base}/tokenize failed: {exc!r}") from None
            if response.status_code == 200:
                self._tokenize = True
                return _int_field(response.json(), "count", "/tokenize")
            if response.status_code not in (404, 405) or self._tokenize:
                raise WorkloadError(
                    f"POST {self._base}/tokenize: HTTP {response.status_code}: "
                    f"{response.text[:300]}"
                )
            self._tokenize = False
        return await self._count_by_usage(text, chat=chat)

    async def _count_by_usage(self, text: str, *, chat: bool) -> int:
        body: dict[str, Any] = {"model": self._model, "max_tokens": 1, "temperature": 0}
        if chat:
            path, body["messages"] = "/v1/chat/completions", messages(text)
        else:
            path, body["prompt"] = "/v1/completions", text
        try:
            response = await self._client.post(f"{self._base}{path}", json=body)
        except httpx.HTTPError as exc:
            raise WorkloadError(f"POST {self._base}{path} failed: {exc!r}") from None
        if response.status_code != 200:
            raise WorkloadError(
                f"no /tokenize, and counting with {path} failed: HTTP {response.status_code}: "
                f"{response.text[:300]}"
            )
        usage = response.json().get("usage")
        if not isinstance(usage, dict):
            raise WorkloadError(f"no /tokenize, and {path} returned no usage to count with")
        return _int_field(usage, "prompt_tokens", path)


def _int_field(data: Any, key: str, where: str) -> int:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise WorkloadError(f"{where} returned no integer {key!r}: {str(data)[:200]}")
    return value


class PromptBuilder:
    """Builds prompts to exact token counts; remembers the last word count as the next guess."""

    def __init__(self, counter: TokenCounter, *, chat: bool, seed: int = 0) -> None:
        self._counter = counter
        self._chat = chat
        words = list(_WORDS)
        random.Random(seed).shuffle(words)  # noqa: S311  (filler, not secrets)
        self._words = words
        self._guess: dict[int, int] = {}  # target -> word count that worked last time

    def _filler(self, count: int) -> str:
        words = self._words
        return " ".join(words[i % len(words)] for i in range(count))

    async def build(self, target: int, head: str = "") -> Prompt:
        """``head`` followed by filler, exactly ``target`` tokens as the server counts them."""
        if target < 1:
            raise WorkloadError(f"a prompt needs at least 1 token, not {target}")
        separator = " " if head and not head.endswith((" ", "\n")) else ""

        def text(k: int) -> str:
            return head + separator + self._filler(k) if k else head

        guess = self._guess.get(target)
        if guess is not None:  # the usual case after the first prompt: one call
            got = await self._counter.count(text(guess), chat=self._chat)
            if got == target:
                return Prompt(text(guess), got)
        base = await self._counter.count(text(0), chat=self._chat)
        if base > target:
            raise WorkloadError(
                f"cannot build a {target}-token prompt: its fixed part alone is {base} tokens"
            )
        if base == target:
            return Prompt(text(0), base)
        k = self._guess.get(target, target - base)
        seen: dict[int, int] = {0: base}
        for _ in range(_MAX_ROUNDS):
            k = max(1, k)
            if k not in seen:
                seen[k] = await self._counter.count(text(k), chat=self._chat)
            got = seen[k]
            if got == target:
                self._guess[target] = k
                return Prompt(text(k), got)
            step = target - got
            nxt = k + step
            if nxt in seen:  # oscillating: walk one word at a time toward the target
                nxt = k + (1 if step > 0 else -1)
                if nxt in seen:
                    break
            k = nxt
        closest = min(seen.values(), key=lambda n: abs(n - target))
        raise WorkloadError(
            f"could not build a prompt of exactly {target} tokens (closest: {closest}); "
            "the tokenizer merges the filler words"
        )


@dataclass(frozen=True)
class Shape:
    """What every request of a run looks like."""

    prompt_tokens: int
    output_tokens: int
    chat: bool = False
    shared_prefix_tokens: int = 0  # 0 = cold: a unique nonce starts every prompt
    seed: int = 0

    @property
    def mode(self) -> str:
        return "shared-prefix" if self.shared_prefix_tokens else "cold"

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "chat": self.chat,
            "shared_prefix_tokens": self.shared_prefix_tokens,
            "mode": self.mode,
            "seed": self.seed,
        }


class Workload:
    """Makes the prompts of a run: cold (nonce first) or a shared prefix then a nonce."""

    def __init__(self, builder: PromptBuilder, shape: Shape) -> None:
        self._builder = builder
        self.shape = shape
        self.prefix: Prompt | None = None

    async def prepare(self) -> None:
        if self.shape.shared_prefix_tokens:
            if self.shape.shared_prefix_tokens >= self.shape.prompt_tokens:
                raise WorkloadError(
                    f"--shared-prefix-tokens {self.shape.shared_prefix_tokens} must be below "
                    f"--prompt-tokens {self.shape.prompt_tokens}"
                )
            self.prefix = await self._builder.build(self.shape.shared_prefix_tokens)

    async def prompt(self) -> Prompt:
        tag = f"[{nonce()}]"
        if self.prefix is None:
            return await self._builder.build(self.shape.prompt_tokens, head=tag + " ")
        return await self._builder.build(
            self.shape.prompt_tokens, head=f"{self.prefix.text}\n{tag} "
        )

    async def prompts(self, count: int) -> list[Prompt]:
        return [await self.prompt() for _ in range(count)]
