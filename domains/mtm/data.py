"""Readers for the fact-checked-claim retrieval releases used by MTM (Sheng et al., ACL 2021).

Three layouts become one :class:`FactCheckData` (claims, articles as sentence lists, qrels, splits and
optional first-stage candidate lists):

- MTM's Twitter and Weibo releases (``ICTMCG/MTM`` ``dataset/{Twitter,Weibo}``): ``raw/FN_*.json`` (claims
  ``{_id, content | content_all, debunking_ids}``), ``raw/DN_*.json`` (articles ``{_id, content | content_all:
  [sentences]}``) and ``splits/data/top50.{train,val,test}.line`` (TSV ``qid qidx did didx label``) or
  ``top50.{val,test}`` (one line per claim, Python lists of 50 dids/didxs/labels).
- Vo & Lee's Politifact release (``nguyenvo09/EMNLP2020`` ``formatted_data/Politifact``): tweets, articles
  with ``body-text`` sentence lists, ``query_article_interaction.csv`` and ``query.negatives``.

Every malformed record raises :class:`~polyrank.shared.errors.FormatError` naming the file and line.
"""

from __future__ import annotations

import ast
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from polyrank.shared.errors import FormatError, MissingResourceError, PolyrankError

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class FactCheckData:
    """Claims (``qid -> text``), articles (``did -> sentences``), qrels, splits (``name -> qids``) and
    optional first-stage candidates (``qid -> [did, ...]`` in first-stage order)."""

    name: str
    claims: dict[str, str]
    articles: dict[str, list[str]]
    qrels: dict[str, dict[str, int]]
    splits: dict[str, list[str]] = field(default_factory=dict)
    candidates: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def subset(self, split: str) -> list[str]:
        if split not in self.splits:
            raise PolyrankError(f"{self.name} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise FormatError(path, exc.lineno, f"invalid JSON ({exc.msg}); expected the release's JSON file") from exc


def clean_sentences(sentences: Any, path: Path, record: int, what: str) -> list[str]:
    """Strip sentences and drop empty ones; an article must keep at least one sentence."""
    if isinstance(sentences, str):
        sentences = [sentences]
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise FormatError(path, record, f"{what}: expected a list of sentence strings, got {type(sentences).__name__}")
    kept = [s.strip() for s in sentences if s and s.strip()]
    if not kept:
        raise FormatError(path, record, f"{what} is empty (no non-blank sentence); remove it or give it content")
    return kept


# ----------------------------------------------------------------------------------------------- MTM release
def _find(root: Path, pattern: str) -> Path:
    for folder in (root / "raw", root):
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    raise MissingResourceError(f"no {pattern} under {root} or {root}/raw; expected MTM's release layout "
                               "(see datasets/mtm_twitter/README.md)")


def _records(path: Path, kind: str, fields: str):
    """``(record number, record)`` of a JSON list of objects that each carry an ``_id``."""
    records = _load_json(path)
    if not isinstance(records, list):
        raise FormatError(path, None, f"expected a JSON list of {kind}s {{{fields}}}")
    for number, rec in enumerate(records, start=1):
        if not isinstance(rec, dict) or "_id" not in rec:
            raise FormatError(path, number, f"{kind} record lacks '_id'")
        yield number, rec


def _read_fn(path: Path) -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    order, claims, debunking = [], {}, {}
    for number, rec in _records(path, "claim", "_id, content, debunking_ids"):
        text = rec.get("content_all", rec.get("content"))
        if not isinstance(text, str):
            raise FormatError(path, number, "claim needs a string 'content' (Twitter) or 'content_all' (Weibo)")
        qid = str(rec["_id"])
        order.append(qid)
        claims[qid] = text
        debunking[qid] = [str(d) for d in rec.get("debunking_ids", [])]
    return order, claims, debunking


def _read_dn(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    order, articles = [], {}
    for number, rec in _records(path, "article", "_id, content: [sentences]"):
        sentences = rec.get("content_all", rec.get("content"))
        did = str(rec["_id"])
        order.append(did)
        articles[did] = clean_sentences(sentences, path, number, f"article {did}")
    return order, articles


def _split_fields(line: str, path: Path, number: int) -> list[str]:
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 5:
        raise FormatError(path, number, f"expected 5 tab-separated fields (qid, qidx, did, didx, label), "
                                        f"got {len(parts)}")
    return parts


def _checked_index(value: str, order: list[str], ident: str, kind: str, path: Path, number: int) -> None:
    try:
        index = int(value)
    except ValueError:
        raise FormatError(path, number, f"{kind} index {value!r} is not an integer") from None
    if not 0 <= index < len(order) or order[index] != ident:
        raise FormatError(path, number, f"{kind} index {index} does not point at {kind} {ident!r} in the raw "
                                        "JSON; the split file and the raw files come from different releases")


def read_split_lines(path: Path, claim_order: list[str], article_order: list[str]) -> list[tuple[str, str, int]]:
    """``top50.*.line``: one (qid, did, label) per line, checked against the raw files' id/index columns."""
    known_claims, known_articles = set(claim_order), set(article_order)
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            qid, qidx, did, didx, label = _split_fields(line, path, number)
            if qid not in known_claims:
                raise FormatError(path, number, f"unknown claim id {qid!r} (not in the FN file)")
            if did not in known_articles:
                raise FormatError(path, number, f"unknown article id {did!r} (not in the DN file)")
            _checked_index(qidx, claim_order, qid, "claim", path, number)
            _checked_index(didx, article_order, did, "article", path, number)
            if label not in ("0", "1"):
                raise FormatError(path, number, f"label must be 0 or 1, got {label!r}")
            rows.append((qid, did, int(label)))
    return rows


def read_split_lists(path: Path, claim_order: list[str], article_order: list[str]) -> list[tuple[str, str, int]]:
    """``top50.{val,test}``: one claim per line with Python lists of dids, didxs and labels."""
    rows = []
    known_claims, known_articles = set(claim_order), set(article_order)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            qid, qidx, dids, didxs, labels = _split_fields(line, path, number)
            try:
                dids, didxs, labels = (ast.literal_eval(x) for x in (dids, didxs, labels))
            except (ValueError, SyntaxError):
                raise FormatError(path, number, "did/didx/label columns must be Python lists") from None
            if not (len(dids) == len(didxs) == len(labels)):
                raise FormatError(path, number, f"list lengths differ: {len(dids)} dids, {len(didxs)} didxs, "
                                                f"{len(labels)} labels")
            if qid not in known_claims:
                raise FormatError(path, number, f"unknown claim id {qid!r} (not in the FN file)")
            _checked_index(qidx, claim_order, qid, "claim", path, number)
            for did, didx, label in zip(dids, didxs, labels):
                if str(did) not in known_articles:
                    raise FormatError(path, number, f"unknown article id {did!r} (not in the DN file)")
                _checked_index(str(didx), article_order, str(did), "article", path, number)
                rows.append((qid, str(did), int(label)))
    return rows


def load_mtm_release(root: str | Path, name: str | None = None) -> FactCheckData:
    """Load MTM's Twitter or Weibo release from ``root`` (holding ``raw/`` and ``splits/data/``)."""
    root = Path(root)
    fn_path, dn_path = _find(root, "FN_*.json"), _find(root, "DN_*.json")
    claim_order, claims, debunking = _read_fn(fn_path)
    article_order, articles = _read_dn(dn_path)
    split_dir = root / "splits" / "data" if (root / "splits" / "data").is_dir() else root
    data = FactCheckData(name or root.name, claims, articles, qrels={})
    for qid, dids in debunking.items():
        data.qrels[qid] = {d: 1 for d in dids if d in articles}
    for split in SPLITS:
        line_file, list_file = split_dir / f"top50.{split}.line", split_dir / f"top50.{split}"
        if line_file.is_file():
            rows = read_split_lines(line_file, claim_order, article_order)
        elif list_file.is_file():
            rows = read_split_lists(list_file, claim_order, article_order)
        else:
            continue
        qids = list(dict.fromkeys(q for q, _, _ in rows))
        data.splits[split] = qids
        for qid, did, label in rows:
            data.candidates.setdefault(qid, []).append(did)
            if label:
                data.qrels.setdefault(qid, {})[did] = 1
    if not data.splits:
        raise MissingResourceError(f"no top50.{{train,val,test}}[.line] split file under {split_dir}")
    return data


# ------------------------------------------------------------------------------------------- Politifact
TWEET_FIELDS = ("OriginalTweetContent_Processed",)
ARTICLE_FIELDS = ("headerTitle", "body-text")


def _tweet_text(tweet: dict, fields: Sequence[str], path: Path, number: int) -> str:
    parts = []
    for name in fields:
        if name == "ocr":           # the release stores Images_in_tweet as a Python repr string, not a dict
            from polyrank.domains.mtm.first_stage import ocr_text

            parts.append(ocr_text(tweet))
        elif name not in tweet:
            raise FormatError(path, number, f"tweet lacks field {name!r}; available: {sorted(tweet)}")
        else:
            parts.append(str(tweet[name]))
    return " ".join(p for p in parts if p)


def load_politifact(folder: str | Path, tweet_fields: Sequence[str] = TWEET_FIELDS,
                    article_fields: Sequence[str] = ARTICLE_FIELDS, seed: int = 0,
                    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                    split: Literal["article", "query"] = "article") -> FactCheckData:
    """Load Vo & Lee's Politifact release, split **by article** (``split="article"``: queries sharing an article
    stay together, :func:`split_by_article`) or **by query** (``split="query"``, :func:`split_by_query`: most test
    claims then share their article with training claims, so it measures recall of known fact-checks).

    ``tweet_fields`` name the tweet fields joined into the claim (``"ocr"`` adds image OCR text);
    ``article_fields`` the article fields whose sentences form the article (title first, then body).
    ``query.negatives`` is read and checked against the interactions; its candidates are kept in
    ``candidates`` **sorted by article id** (the file lists the positive first).
    """
    folder = Path(folder)
    names = ["queries_content.json", "articles_content.json", "query_mapped.json", "article_mapped.json",
             "query_article_interaction.csv", "query.negatives"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise MissingResourceError(f"{folder} lacks {missing}; expected the Politifact release "
                                   "(see datasets/politifact/README.md)")
    tweets = _load_json(folder / "queries_content.json")
    raw_articles = _load_json(folder / "articles_content.json")
    query_index = {str(k): int(v) for k, v in _load_json(folder / "query_mapped.json").items()}
    article_index = {str(k): int(v) for k, v in _load_json(folder / "article_mapped.json").items()}
    qid_of = {idx: tid for tid, idx in query_index.items()}
    claims = {tid: _tweet_text(t, tweet_fields, folder / "queries_content.json", n)
              for n, (tid, t) in enumerate(tweets.items(), start=1)}
    articles = {}
    for number, (url, art) in enumerate(raw_articles.items(), start=1):
        sentences = []
        for name in article_fields:
            value = art.get(name, [])
            sentences.extend([value] if isinstance(value, str) else value)
        articles[str(article_index[url])] = clean_sentences(sentences, folder / "articles_content.json", number,
                                                            f"article {url}")
    qrels: dict[str, dict[str, int]] = {}
    path = folder / "query_article_interaction.csv"
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.strip().split(",")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise FormatError(path, number, f"expected 'query_idx,article_idx', got {line!r}")
        q, a = int(parts[0]), parts[1]
        if q not in qid_of:
            raise FormatError(path, number, f"unknown query index {q} (not in query_mapped.json)")
        if a not in articles:
            raise FormatError(path, number, f"unknown article index {a} (not in article_mapped.json)")
        qrels.setdefault(qid_of[q], {})[a] = 1
    candidates = _read_negatives(folder / "query.negatives", qid_of, articles, qrels)
    data = FactCheckData("politifact", claims, articles, qrels, candidates=candidates)
    if split not in ("article", "query"):
        raise PolyrankError(f"split={split!r}; expected 'article' (connected components) or 'query'")
    data.splits = split_by_article(qrels, seed, fractions) if split == "article" else split_by_query(qrels, seed,
                                                                                                     fractions)
    how = "by article (connected components of the claim-article graph)" if split == "article" else "by query"
    data.notes.append(f"tweet fields {list(tweet_fields)}; article fields {list(article_fields)}; split {how}")
    return data


def _read_negatives(path: Path, qid_of: dict[int, str], articles: dict[str, list[str]],
                    qrels: dict[str, dict[str, int]]) -> dict[str, list[str]]:
    out = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].isdigit() or int(parts[0]) not in qid_of:
            raise FormatError(path, number, "expected 'query_idx<TAB>article_idx:label ...' with a known query")
        qid = qid_of[int(parts[0])]
        dids = []
        for item in parts[1:]:
            did, _, label = item.partition(":")
            if did not in articles or label not in ("0", "1"):
                raise FormatError(path, number, f"bad candidate {item!r}: expected a known article_idx:0|1")
            if (label == "1") != (did in qrels.get(qid, {})):
                raise FormatError(path, number, f"candidate {item!r} disagrees with the interactions file")
            dids.append(did)
        out[qid] = sorted(dids, key=int)
    return out


def split_by_query(qrels: dict[str, dict[str, int]], seed: int = 0,
                   fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> dict[str, list[str]]:
    """Split claims at random (seeded), ignoring which article they share: ``round(n * fraction)`` per split."""
    qids = sorted(qrels)
    random.Random(seed).shuffle(qids)
    n_train = round(len(qids) * fractions[0])
    n_val = round(len(qids) * fractions[1])
    parts = {"train": qids[:n_train], "val": qids[n_train:n_train + n_val], "test": qids[n_train + n_val:]}
    return {s: sorted(q) for s, q in parts.items()}


def split_by_article(qrels: dict[str, dict[str, int]], seed: int = 0,
                     fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> dict[str, list[str]]:
    """Split claims so that no relevant article is shared across splits (union-find over the bipartite graph)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for qid, docs in qrels.items():
        for did in docs:
            parent[find("q" + qid)] = find("d" + did)
    groups: dict[str, list[str]] = {}
    for qid in sorted(qrels):
        groups.setdefault(find("q" + qid), []).append(qid)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    total, bounds = len(qrels), [fractions[0], fractions[0] + fractions[1]]
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    seen = 0
    for key in keys:
        share = seen / max(total, 1)
        split = "train" if share < bounds[0] else "val" if share < bounds[1] else "test"
        splits[split].extend(groups[key])
        seen += len(groups[key])
    return {s: sorted(q) for s, q in splits.items()}
