"""Prompt building to an exact token count, with counters that behave like tokenizers."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.evidence.bench.workload import PromptBuilder, Shape, Workload, WorkloadError


class WordCounter:
    """One token per word, one BOS; chat adds a template. Counts its calls."""

    def __init__(self, template: int = 5) -> None:
        self.template = template
        self.calls = 0

    async def count(self, text: str, *, chat: bool) -> int:
        self.calls += 1
        return len(text.split()) + 1 + (self.template if chat else 0)


class MergingCounter(WordCounter):
    """Every third word pair merges into one token, like BPE merges do."""

    async def count(self, text: str, *, chat: bool) -> int:
        words = len(text.split())
        return words - words // 3 + 1


class SteppingCounter(WordCounter):
    """Counts only move in steps of two: an exact odd count is impossible."""

    async def count(self, text: str, *, chat: bool) -> int:
        return 2 * len(text.split())


def build(builder: PromptBuilder, target: int, head: str = "") -> tuple[str, int]:
    prompt = asyncio.run(builder.build(target, head))
    return prompt.text, prompt.tokens


@pytest.mark.parametrize("target", [1, 2, 17, 128, 1000])
def test_exact_count_completion(target: int) -> None:
    counter = WordCounter()
    text, tokens = build(PromptBuilder(counter, chat=False), target)
    assert tokens == target
    assert len(text.split()) + 1 == target


def test_exact_count_chat_includes_template() -> None:
    text, tokens = build(PromptBuilder(WordCounter(), chat=True), 64)
    assert tokens == 64
    assert len(text.split()) + 1 + 5 == 64


def test_merging_tokenizer_still_exact() -> None:
    for target in (10, 50, 333):
        _, tokens = build(PromptBuilder(MergingCounter(), chat=False), target, head="[abc]")
        assert tokens == target


def test_impossible_count_is_an_error_not_a_guess() -> None:
    with pytest.raises(WorkloadError, match="exactly 7 tokens"):
        build(PromptBuilder(SteppingCounter(), chat=False), 7)


def test_head_longer_than_target_is_an_error() -> None:
    with pytest.raises(WorkloadError, match="fixed part alone"):
        build(PromptBuilder(WordCounter(), chat=False), 3, head="one two three four")


def test_second_prompt_reuses_the_guess() -> None:
    counter = WordCounter()
    builder = PromptBuilder(counter, chat=False)
    build(builder, 500, head="[n1]")
    before = counter.calls
    build(builder, 500, head="[n2]")
    assert counter.calls - before == 1  # the remembered length fits at once


def test_cold_prompts_start_with_distinct_nonces() -> None:
    workload = Workload(PromptBuilder(WordCounter(), chat=False), Shape(40, 8))
    asyncio.run(workload.prepare())
    prompts = asyncio.run(workload.prompts(5))
    assert all(p.tokens == 40 for p in prompts)
    heads = {p.text.split()[0] for p in prompts}
    assert len(heads) == 5
    assert all(h.startswith("[") for h in heads)


def test_shared_prefix_is_identical_then_nonce() -> None:
    workload = Workload(
        PromptBuilder(WordCounter(), chat=False), Shape(60, 8, shared_prefix_tokens=30)
    )
    asyncio.run(workload.prepare())
    assert workload.prefix is not None
    assert workload.prefix.tokens == 30
    prompts = asyncio.run(workload.prompts(3))
    assert all(p.text.startswith(workload.prefix.text + "\n[") for p in prompts)
    assert all(p.tokens == 60 for p in prompts)
    assert len({p.text for p in prompts}) == 3


def test_shared_prefix_must_be_shorter_than_prompt() -> None:
    workload = Workload(
        PromptBuilder(WordCounter(), chat=False), Shape(30, 8, shared_prefix_tokens=30)
    )
    with pytest.raises(WorkloadError, match="must be below"):
        asyncio.run(workload.prepare())
