"""Tiny random causal LMs (Llama or Qwen2 architecture) with a local WordPiece tokenizer, for tests.

The tokenizer covers any text: whole words from ``words`` plus single characters (and ``##`` continuations)
as fallback, ChatML special tokens and a ChatML chat template, so prompts render as for SmolLM2/Qwen.
Weights are drawn inside :func:`torch.random.fork_rng`: building one never changes the global RNG.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

import torch

from polyrank.shared.llm.loading import CausalLM, prepare_tokenizer

SPECIAL = ["[PAD]", "[UNK]", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<answer>", "</answer>"]
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
ARCHITECTURES = ("llama", "qwen2")


def tiny_tokenizer(words: Iterable[str] = ()):
    """A WordPiece tokenizer over ``words`` plus every printable character (so nothing is unknown)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in string.printable if not c.isspace()]
    vocab: dict[str, int] = {}
    for token in [*SPECIAL, *chars, *(f"##{c}" for c in chars), *sorted(set(words))]:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        eos_token="<|im_end|>", bos_token="<|im_start|>",
                                        additional_special_tokens=SPECIAL[2:])
    tokenizer.chat_template = CHATML
    return prepare_tokenizer(tokenizer)


def tiny_causal_lm(arch: str = "llama", words: Iterable[str] = (), seed: int = 0, hidden_size: int = 32,
                   num_layers: int = 2, num_heads: int = 4, num_kv_heads: int = 2, device: str | None = None
                   ) -> CausalLM:
    """A random ``arch`` (``llama``/``qwen2``) causal LM and its tokenizer; deterministic in ``seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    tokenizer = tiny_tokenizer(words)
    config_class, model_class = (LlamaConfig, LlamaForCausalLM) if arch == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    config = config_class(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                          num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
                          max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                          tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
        # random init gives near-uniform next-token distributions; a wider output layer makes read-outs differ
        torch.nn.init.normal_(model.lm_head.weight, std=1.0)
    model = model.to(device or "cpu").eval()
    return CausalLM(model, tokenizer, f"tiny-random-{arch}")
