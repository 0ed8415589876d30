"""Modular cross-lingual cross-encoders (Litschko, Vulic, Glavas, COLING 2022, Sec. 3): a multilingual BERT/XLM-R
cross-encoder (the shared monoBERT :class:`~polyrank.shared.cross_encoder.CrossEncoder`) whose ranking ability is
one module and whose language is another.

* **Adapters** (MAD-X, Pfeiffer et al. 2020; the ``adapters`` library): a language adapter (``seq_bn_inv`` =
  Pfeiffer bottleneck after the FFN + invertible NICE adapter on the embeddings, reduction factor 2) trained with
  MLM; a ranking adapter (``seq_bn``, reduction factor 16) trained stacked on the frozen source-language adapter;
  inference ``Stack(LA_target, RA)`` with the invertible adapter deleted (the paper's default,
  ``delete_invertible_adapter``) or kept (ablation ``+RA+LA-INV``); the ``Split`` variant
  ``Stack(Split(LA_query, LA_doc), RA)`` routes the query tokens and the document tokens through different LAs.
* **SFTMs** (:mod:`.sft`): theta = theta0 + phi_rank + phi_lang.
* **Full fine-tuning**: the baseline, the whole encoder trained.

A *module file* is a small folder (``module.json`` + ``weights.safetensors``) recording its kind, language, the
base model it was trained on (a fingerprint of the weights) and the vocabulary; attaching it to another base or
tokenizer is an error that says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyrank.shared.cross_encoder import CrossEncoder, CrossEncoderReranker, build_cross_encoder, document_text
from polyrank.shared.errors import PolyrankError
from polyrank.shared.extras import require

FORMAT = "polyrank-crosslingual-module"
KINDS = ("language_adapter", "ranking_adapter", "language_sft", "ranking_sft", "ranking_full")
PLACEHOLDER = "{MODULE}"
# ISO 639-1 codes of the paper's languages (CLEF-2003, HC4, the low-resource query sets) and of the demo data, with
# the ISO 639-3 spellings HC4 uses; any other code is rejected (a typo would silently pick no adapter).
LANGUAGES = {"en": "English", "de": "German", "fi": "Finnish", "it": "Italian", "ru": "Russian", "fa": "Persian",
             "zh": "Chinese", "ar": "Arabic", "sw": "Swahili", "so": "Somali", "ky": "Kyrgyz", "ug": "Uyghur",
             "tr": "Turkish", "fr": "French", "es": "Spanish", "nl": "Dutch", "sv": "Swedish", "pt": "Portuguese",
             "ja": "Japanese", "ko": "Korean", "hi": "Hindi", "bn": "Bengali", "id": "Indonesian", "te": "Telugu",
             "th": "Thai", "pl": "Polish", "cs": "Czech"}
ISO3 = {"eng": "en", "deu": "de", "ger": "de", "fin": "fi", "ita": "it", "rus": "ru", "fas": "fa", "per": "fa",
        "zho": "zh", "chi": "zh", "ara": "ar", "swa": "sw", "som": "so", "kir": "ky", "uig": "ug", "tur": "tr",
        "fra": "fr", "fre": "fr", "spa": "es", "nld": "nl", "swe": "sv", "por": "pt", "jpn": "ja", "kor": "ko",
        "hin": "hi", "ben": "bn", "ind": "id", "tel": "te", "tha": "th", "pol": "pl", "ces": "cs"}


def language_code(code: str) -> str:
    """Canonical ISO 639-1 code of ``code`` (``"rus"`` -> ``"ru"``); an unknown code is a clear error."""
    key = str(code).strip().lower()
    key = ISO3.get(key, key)
    if key not in LANGUAGES:
        raise PolyrankError(f"unknown language code {code!r}; use an ISO 639-1 (or 639-3) code, one of "
                            f"{sorted(LANGUAGES)} (or {sorted(ISO3)})")
    return key


def adapter_name(kind: str, language: str | None = None) -> str:
    return f"la_{language}" if kind == "language" else "ra"


# --------------------------------------------------------------------------------------------------- bases


@dataclass
class Base:
    """A base encoder as a shared :class:`CrossEncoder` + tokenizer, and fingerprints of weights and vocabulary."""

    model: CrossEncoder
    tokenizer: Any
    spec: str
    signature: str
    vocab_signature: str

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def weight_signature(model: CrossEncoder) -> str:
    """Fingerprint of a base encoder's pretrained weights (shape + a slice of the embeddings and first layer)."""
    bert = model.bert
    digest = hashlib.sha256(json.dumps([bert.config.vocab_size, bert.config.hidden_size,
                                        bert.config.num_hidden_layers]).encode())
    for tensor in (bert.embeddings.word_embeddings.weight[:64], bert.encoder.layer[0].attention.self.query.weight):
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def vocab_signature(tokenizer: Any) -> str:
    vocab = tokenizer.get_vocab()
    return hashlib.sha256(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1])).encode()).hexdigest()[:16]


def resolve_base(spec: str | Path) -> tuple[str | None, bool]:
    """``(folder, tiny)`` of a base spec: ``"tiny"`` (random 2-layer BERT, MiniLM tokenizer), ``"e5"`` (the
    rebuilt multilingual-e5-small) or a local BERT/XLM-R folder with ``config.json``."""
    spec = str(spec)
    if spec == "tiny":
        return None, True
    if spec in ("e5", "multilingual-e5-small"):
        from polyrank.domains.crosslingual.e5 import rebuild_e5

        return str(rebuild_e5()), False
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise PolyrankError(f"base {spec!r} is neither 'tiny', 'e5' nor a local Hugging Face folder with config.json "
                            "(bert-base-multilingual-uncased, XLM-R, ...); polyrank never downloads models")
    return str(path), False


def build_base(spec: str | Path = "e5", seed: int = 0) -> Base:
    """The shared cross-encoder on ``spec`` (see :func:`resolve_base`), its new head drawn on a forked RNG."""
    folder, tiny = resolve_base(spec)
    if folder is not None and "xlm-roberta" in json.loads((Path(folder) / "config.json").read_text()).get(
            "model_type", ""):
        raise PolyrankError(f"{folder} is an XLM-R checkpoint; convert it to a BertModel folder (same weights, "
                            "BERT names) or use the rebuilt multilingual-e5-small ('e5'), an XLM-R-family BERT")
    model, tokenizer = build_cross_encoder(folder, seed=seed, tiny=tiny)
    if "token_type_ids" not in tokenizer.model_input_names:
        tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    return Base(model, tokenizer, str(spec), weight_signature(model), vocab_signature(tokenizer))


def init_adapters(model: CrossEncoder) -> None:
    require("adapters", extra="crosslingual")
    import adapters

    if not hasattr(model.bert, "adapters_config"):
        adapters.init(model.bert)


def adapter_config(kind: str, reduction_factor: float, invertible: bool = True):
    """``seq_bn_inv`` (Pfeiffer + invertible NICE) for language adapters, ``seq_bn`` (Pfeiffer) for ranking ones."""
    from adapters import SeqBnConfig, SeqBnInvConfig

    if kind == "language" and invertible:
        return SeqBnInvConfig(reduction_factor=reduction_factor)
    return SeqBnConfig(reduction_factor=reduction_factor)


def add_adapter(model: CrossEncoder, name: str, kind: str, reduction_factor: float, invertible: bool = True) -> None:
    init_adapters(model)
    model.bert.add_adapter(name, config=adapter_config(kind, reduction_factor, invertible))


def adapter_keys(model: CrossEncoder, name: str) -> list[str]:
    return [k for k in model.state_dict() if f".adapters.{name}." in k or f"invertible_adapters.{name}." in k]


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------------- module files


@dataclass
class ModuleFile:
    """A trained module: ``kind`` (one of :data:`KINDS`), its tensors and metadata (language, base, config)."""

    kind: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def language(self) -> str | None:
        return self.meta.get("language")

    def save(self, directory: str | Path) -> Path:
        """``module.json`` + ``weights.safetensors``, written atomically."""
        from safetensors.torch import save_file

        from polyrank.shared.atomic import atomic_directory

        directory = Path(directory)
        with atomic_directory(directory, marker="module.json") as staging:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.tensors.items()},
                      str(Path(staging) / "weights.safetensors"))
            (Path(staging) / "module.json").write_text(json.dumps({"format": FORMAT, "kind": self.kind, **self.meta},
                                                                  indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ModuleFile:
        from safetensors.torch import load_file

        directory = Path(directory)
        meta_path = directory / "module.json"
        if not meta_path.is_file():
            raise PolyrankError(f"{directory} is not a crosslingual module (no module.json); pass a folder written by "
                                "a language/ranking module's export (ModuleFile.save)")
        meta = json.loads(meta_path.read_text())
        if meta.pop("format", None) != FORMAT or meta.get("kind") not in KINDS:
            raise PolyrankError(f"{meta_path}: not a {FORMAT} file of a known kind {KINDS}")
        return cls(meta.pop("kind"), load_file(str(directory / "weights.safetensors")), meta)

    def check_base(self, base: Base, where: str = "") -> None:
        """Raise unless this module was trained on ``base`` with the same vocabulary."""
        if self.meta.get("vocab") and self.meta["vocab"] != base.vocab_signature:
            raise PolyrankError(f"{where or 'module'} ({self.kind}) was trained with another vocabulary "
                                f"({self.meta.get('vocab_size')} tokens, fingerprint {self.meta['vocab']}) than the "
                                f"tokenizer of base {base.spec!r} ({len(base.tokenizer.get_vocab())} tokens, "
                                f"{base.vocab_signature}); use the tokenizer it was trained with")
        if self.meta.get("base") and self.meta["base"] != base.signature:
            raise PolyrankError(f"{where or 'module'} ({self.kind}) was trained on another base model "
                                f"(fingerprint {self.meta['base']}, base {self.meta.get('base_spec')!r}) than "
                                f"{base.spec!r} ({base.signature}); load it on the base it was trained on")


def base_meta(base: Base) -> dict[str, Any]:
    return {"base": base.signature, "base_spec": base.spec, "vocab": base.vocab_signature,
            "vocab_size": len(base.tokenizer.get_vocab())}


def export_adapter(model: CrossEncoder, base: Base, name: str, kind: str, language: str | None,
                   reduction_factor: float, invertible: bool, extra: dict[str, Any] | None = None) -> ModuleFile:
    """A language or ranking adapter of ``model`` as a :class:`ModuleFile` (a ranking adapter keeps the head)."""
    state = model.state_dict()
    tensors = {k.replace(f".{name}.", f".{PLACEHOLDER}."): state[k] for k in adapter_keys(model, name)}
    if kind == "ranking_adapter":
        tensors.update({k: state[k] for k in state if k.startswith("classifier.")})
    meta = {**base_meta(base), "language": language, "reduction_factor": reduction_factor, "invertible": invertible,
            "trainable_params": int(sum(v.numel() for v in tensors.values())), **(extra or {})}
    return ModuleFile(kind, tensors, meta)


def attach_adapter(model: CrossEncoder, module: ModuleFile, name: str) -> None:
    """Add ``module``'s adapter under ``name`` and load its tensors (strict: every key of the new adapter)."""
    kind = "language" if module.kind == "language_adapter" else "ranking"
    add_adapter(model, name, kind, module.meta["reduction_factor"], module.meta.get("invertible", False))
    expected = set(adapter_keys(model, name))
    given = {k.replace(f".{PLACEHOLDER}.", f".{name}."): v for k, v in module.tensors.items()}
    head = {k: v for k, v in given.items() if k.startswith("classifier.")}
    body = {k: v for k, v in given.items() if not k.startswith("classifier.")}
    if set(body) != expected:
        raise PolyrankError(f"{module.kind} module does not fit this model: missing {sorted(expected - set(body))[:3]},"
                            f" unexpected {sorted(set(body) - expected)[:3]} (another architecture?)")
    state = model.state_dict()
    bad = [k for k, v in given.items() if state[k].shape != v.shape]
    if bad:
        raise PolyrankError(f"{module.kind} module tensors have other shapes than this model: {bad[:3]}")
    model.load_state_dict({**state, **body, **head}, strict=True)


# --------------------------------------------------------------------------------------------------- composition


@dataclass
class Setup:
    """How a reranker composes its modules: languages of the queries and documents, Split or not, invertible."""

    query_language: str | None = None
    document_language: str | None = None
    split: bool = False
    invertible: str = "drop"

    def __post_init__(self) -> None:
        if self.invertible not in ("drop", "keep"):
            raise PolyrankError(f"invertible must be 'drop' (the paper's default) or 'keep', got {self.invertible!r}")


def compose(base: Base, ranking: ModuleFile, languages: dict[str, ModuleFile], setup: Setup) -> CrossEncoder:
    """The ranker of ``base`` + ``ranking`` + the language modules (checked against the base). Adapter rankers get
    ``Stack(LA_doc, RA)`` (or ``Stack(Split(LA_query, LA_doc), RA)``); SFT rankers theta0 + phi_rank + phi_lang(s);
    a full fine-tuned ranker loads whole."""
    from polyrank.domains.crosslingual import sft

    model = base.model
    ranking.check_base(base, "the ranking module")
    for lang, module in languages.items():
        module.check_base(base, f"the {lang} language module")
    if ranking.kind == "ranking_full":
        model.load_state_dict(ranking.tensors, strict=True)
        return model
    if ranking.kind == "ranking_sft":
        diff = sft.SparseDiff.from_tensors(ranking.tensors)
        sft.apply(model, diff, with_heads=True)
        for lang in dict.fromkeys([setup.query_language, setup.document_language] if setup.split
                                  else [setup.document_language]):
            if lang in languages:
                if languages[lang].kind != "language_sft":
                    raise PolyrankError("an SFT ranking module composes with language SFTs, got "
                                        f"{languages[lang].kind}")
                sft.apply(model, sft.SparseDiff.from_tensors(languages[lang].tensors), with_heads=False)
        return model
    if ranking.kind != "ranking_adapter":
        raise PolyrankError(f"a ranking module is one of ranking_adapter/ranking_sft/ranking_full, got {ranking.kind}")
    for lang, module in languages.items():
        if module.kind != "language_adapter":
            raise PolyrankError(f"an adapter ranking module composes with language adapters, got {module.kind}")
        attach_adapter(model, module, adapter_name("language", lang))
        if setup.invertible == "drop":
            model.bert.delete_invertible_adapter(adapter_name("language", lang))
    init_adapters(model)
    attach_adapter(model, ranking, "ra")
    model.bert.set_active_adapters(active_setup(setup, languages))
    return model


def active_setup(setup: Setup, languages: dict[str, Any], split_at: int | None = None, length: int | None = None):
    """The adapters composition block: ``Stack(LA, RA)``, ``Stack(Split(LA_q, LA_d, splits), RA)`` or ``RA``."""
    from adapters.composition import Split, Stack

    q, d = setup.query_language, setup.document_language
    if setup.split and q in languages and d in languages and split_at is not None:
        return Stack(Split(adapter_name("language", q), adapter_name("language", d),
                           splits=[split_at, length - split_at]), "ra")
    if d in languages:
        return Stack(adapter_name("language", d), "ra")
    return "ra"


# --------------------------------------------------------------------------------------------------- reranker


class CrosslingualReranker(CrossEncoderReranker):
    """The shared cross-encoder reranker with modular composition, length-sorted batching and the Split routing.

    Pairs are sorted by length before batching (less padding: the benchmark's speed-up); with ``setup.split`` the
    pairs of one batch share their query-part length so one ``Split`` boundary fits the batch.
    """

    def __init__(self, model: CrossEncoder, tokenizer: Any, name: str, setup: Setup | None = None,
                 spec: dict[str, Any] | None = None, max_length: int = 256, batch_size: int = 32,
                 device: str | None = None, languages: Sequence[str] = ()) -> None:
        super().__init__(model, tokenizer, max_length, batch_size, device)
        self.name, self.setup, self.spec, self.languages = name, setup or Setup(), dict(spec or {}), set(languages)

    def _batches(self, queries: Sequence[str], documents: Sequence[str]):
        lengths = np.array([len(q) + len(d) for q, d in zip(queries, documents)])
        order = np.argsort(-lengths, kind="stable")
        if not self.setup.split:
            for start in range(0, len(order), self.batch_size):
                yield order[start:start + self.batch_size], None
            return
        groups: dict[str, list[int]] = {}
        for i in order:
            groups.setdefault(queries[i], []).append(int(i))
        for members in groups.values():
            for start in range(0, len(members), self.batch_size):
                yield np.array(members[start:start + self.batch_size]), "split"

    @torch.inference_mode()
    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(queries), dtype=np.float64)
        for idx, mode in self._batches(queries, documents):
            batch = self.encode([queries[i] for i in idx], [documents[i] for i in idx])
            if mode == "split":
                self._score_split(batch, idx, out)
                continue
            out[idx] = self.model(**batch.to(self.device)).float().cpu().numpy()
        return out

    def _score_split(self, batch, idx: np.ndarray, out: np.ndarray) -> None:
        """Sub-batches sharing the first document-token position (truncation may cut some queries)."""
        starts = [next(p for p, s in enumerate(batch.sequence_ids(r)) if s == 1) for r in range(len(idx))]
        length = batch["input_ids"].shape[1]
        for start in sorted(set(starts)):
            rows = [r for r, s in enumerate(starts) if s == start]
            self.model.bert.set_active_adapters(active_setup(self.setup, self.languages, start, length))
            sub = {k: v[rows].to(self.device) for k, v in batch.items()}
            out[idx[rows]] = self.model(**sub).float().cpu().numpy()
        self.model.bert.set_active_adapters(active_setup(self.setup, self.languages))

    def score(self, query: str, candidates) -> np.ndarray:
        if not isinstance(query, str):
            raise PolyrankError(f"a crosslingual query is text (str), got {type(query).__name__}")
        return self.score_pairs([query] * len(candidates), [document_text(c.content) for c in candidates])

    def save(self, directory: str | Path) -> Path:
        """``polyrank.json`` (registry name, base, setup) + ``modules/<ranking|lang>/`` module files; atomic."""
        from polyrank.shared.atomic import atomic_directory
        from polyrank.shared.registry import write_manifest

        modules = self.spec.get("modules")
        if not modules:
            raise PolyrankError("this reranker holds no module files to save (built without modules)")
        directory = Path(directory)
        with atomic_directory(directory) as staging:
            for key, module in modules.items():
                module.save(Path(staging) / "modules" / key)
            write_manifest(staging, self.name, crosslingual={
                "base": self.spec["base"], "seed": self.spec.get("seed", 0), "max_length": self.max_length,
                "setup": vars(self.setup), "modules": sorted(modules)})
        return directory


def build_reranker(name: str, base: str, ranking: ModuleFile, languages: dict[str, ModuleFile] | None = None,
                   setup: Setup | None = None, seed: int = 0, max_length: int = 256, batch_size: int = 32,
                   device: str | None = None) -> CrosslingualReranker:
    """A :class:`CrosslingualReranker` of module files on a base (modules checked against the base)."""
    languages = {language_code(k): v for k, v in (languages or {}).items()}
    setup = setup or Setup()
    for lang in (setup.query_language, setup.document_language):
        if lang is not None and language_code(lang) not in languages and ranking.kind != "ranking_full":
            if lang != ranking.meta.get("source_language"):
                raise PolyrankError(f"no language module for {lang!r}; given {sorted(languages)}")
    base_obj = build_base(base, seed=seed)
    with torch.random.fork_rng(devices=[]):
        model = compose(base_obj, ranking, languages, setup)
    modules = {"ranking": ranking, **{f"lang_{k}": v for k, v in languages.items()}}
    return CrosslingualReranker(model, base_obj.tokenizer, name, setup,
                                {"base": str(base), "seed": seed, "modules": modules}, max_length, batch_size, device,
                                languages)
