"""Causal language models as rerankers' engines; this package knows no domain.

- :mod:`.loading`: a local Hugging Face causal-LM folder or a GGUF file (converted once into a cached folder),
  chat templates, left padding, bf16 on capable CUDA and fp32 on CPU; a hub id gives a clear offline error.
- :mod:`.scoring`: token-budgeted, length-sorted batches with CUDA OOM back-off; shared-prefix KV reuse;
  read-outs (next-token logits of label tokens, short constrained generation with stop strings, attention
  mass from query positions to prefix tokens, aggregated layer by layer).
- :mod:`.parsers`: ``<think>/<answer>`` blocks, permutations ``[C] > [A] > [B]``, REBEL ``Doc: n, Relevance: x``.
- :mod:`.embedding`: Qwen3-Embedding-style last-token pooled, L2-normalised embeddings (instructed queries).
- :mod:`.tiny`: tiny random Llama/Qwen2 models with a local tokenizer, for tests.

Importing this package stays light (no torch); the heavy modules import it themselves.
"""
