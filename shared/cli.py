"""The ``polyrank`` command. The only module that configures logging.

Training subcommands (``fit``, ``validate``, ``test``, ``predict``) go to LightningCLI in subclass mode:
a strict YAML picks the domain's LightningModule and DataModule by ``class_path``, and the ``trainer:``
section holds the arguments of :func:`polyrank.shared.trainer.build_trainer`. The other subcommands
(``index``, ``search``, ``rerank``, ``evaluate``, ``reproduce``, ``demo``, ``list``) are plain functions
exposed with jsonargparse.

Errors: bad input (a :class:`~polyrank.shared.errors.PolyrankError`, an ``OSError`` such as a missing file, a
directory where a file is expected or an unwritable path, non-UTF-8 text, invalid JSON, a ``ValueError`` from
a library's input check, a missing optional package) prints one line ``polyrank: error: <what, where, how to
fix>`` on stderr and exits with status 2; bad arguments exit 2 with jsonargparse's usage and error. Any other
exception is a bug and keeps its traceback. ``polyrank --debug <command> ...`` or ``POLYRANK_DEBUG=1``
re-raises user errors too, with their traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from polyrank.shared.errors import FormatError, PolyrankError

logger = logging.getLogger("polyrank")

TRAINING_COMMANDS = ("fit", "validate", "test", "predict")
# Known user-error classes (UnicodeDecodeError and json.JSONDecodeError are ValueErrors); anything else is a bug.
_USER_ERRORS = (PolyrankError, OSError, ValueError, ImportError)


def setup_logging(level: str | None = None) -> None:
    """Console logging at ``$POLYRANK_LOG_LEVEL`` (default INFO); noisy libraries turned down."""
    level = (level or os.environ.get("POLYRANK_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric", "urllib3", "PIL", "matplotlib",
                  "faiss.loader", "transformers", "bm25s", "py.warnings"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # milvus-lite's embedded gRPC server logs a traceback for each AllocTimestamp call, which it does not
    # implement and pymilvus then replaces by a client-side timestamp: noise, not an error
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong, where and how to fix it, for a user error."""
    name = getattr(exc, "filename", None)
    if isinstance(exc, PolyrankError):
        text = str(exc)
    elif isinstance(exc, IsADirectoryError):
        text = f"{name} is a directory, but a file is expected there; give the path of a file"
    elif isinstance(exc, NotADirectoryError):
        text = f"{name}: a component of this path is a file, not a directory; choose a path under a directory"
    elif isinstance(exc, PermissionError):
        text = f"permission denied: {name}; choose a location you may read/write, or fix its permissions"
    elif isinstance(exc, FileNotFoundError) and name:
        text = f"{name} does not exist; check the path"
    elif isinstance(exc, OSError) and name:
        text = f"{exc.strerror or exc}: {name}"
    elif isinstance(exc, UnicodeDecodeError):
        text = (f"an input is not UTF-8 text ({exc.reason}: byte {exc.object[exc.start:exc.start + 1]!r} at offset "
                f"{exc.start}); re-save the file as UTF-8")
    elif isinstance(exc, json.JSONDecodeError):
        text = f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); fix or regenerate the file"
    elif isinstance(exc, ImportError):
        text = f"{exc}; install the package (or the polyrank extra) that provides it"
    else:
        text = str(exc) or type(exc).__name__
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


@contextlib.contextmanager
def _reading(path: str | Path, what: str) -> Iterator[None]:
    """Name the file (and line) in a UnicodeDecodeError raised while ``path`` is read."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise FormatError(path, _first_non_utf8_line(Path(path)),
                          f"{what} is not UTF-8 text ({exc.reason}); re-save it as UTF-8") from exc


def _first_non_utf8_line(path: Path) -> int | None:
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):  # b"\n" never occurs inside a UTF-8 sequence
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _input_file(path: str | Path, what: str) -> Path:
    """``path`` as an existing regular file, else a clear error naming the option."""
    path = Path(path)
    if path.is_dir():
        raise PolyrankError(f"{what} {path} is a directory; give the path of a file")
    if not path.is_file():
        raise PolyrankError(f"{what} {path} does not exist; check the path")
    return path


def _writable_parent(path: Path, what: str) -> None:
    """Fail fast unless the nearest existing ancestor of ``path`` is a directory we may write into."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:  # atomic writes create missing parents
        parent = parent.parent
    if not parent.is_dir():
        raise PolyrankError(f"{what} {path}: {parent} is a file, not a directory; choose a path under a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PolyrankError(f"{what} {path}: directory {parent} is not writable; choose a writable location")


def _output_file(path: str | Path, what: str = "output") -> Path:
    """Check before any expensive work that a file can be written (atomically) at ``path``."""
    path = Path(path)
    if path.is_dir():
        raise PolyrankError(f"{what} {path} is a directory; give a file path such as {path / 'run.trec'}")
    _writable_parent(path, what)
    return path


def _output_dir(path: str | Path, what: str = "output") -> Path:
    """Check that a directory can be created (or reused) at ``path``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PolyrankError(f"{what} {path} is a file, not a directory; give a directory path")
    _writable_parent(path, what)
    return path


def _positive(value: int, option: str) -> None:
    if value < 1:
        raise PolyrankError(f"{option} must be >= 1, got {value}")


def load_vectors(path: str | Path, option: str):
    """A finite 2-D numeric ``.npy`` matrix ``(n, dim)`` (no pickles), else an error saying what to fix."""
    import numpy as np

    path = _input_file(path, option)
    try:
        matrix = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = ("not NumPy's .npy format, or it holds pickled objects, which polyrank never loads"
                  if "pickle" in str(exc) else describe_error(exc))
        raise FormatError(path, None, f"{option}: not a readable .npy array ({reason}); write it with "
                          "numpy.save(path, matrix)") from exc
    if not isinstance(matrix, np.ndarray):
        matrix.close()
        raise FormatError(path, None, f"{option}: a .npz archive; give a .npy (n, dim) matrix (numpy.save)")
    if matrix.ndim != 2 or 0 in matrix.shape:
        hint = "; for a single vector save vector.reshape(1, -1)" if matrix.ndim == 1 else ""
        raise FormatError(path, None, f"{option}: expected a 2-D (n, dim) matrix with n, dim >= 1, got shape "
                          f"{matrix.shape}{hint}")
    if not (np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)):
        raise FormatError(path, None, f"{option}: dtype {matrix.dtype} is not a real number type; save float32")
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(bad):
        raise FormatError(path, None, f"{option}: {len(bad)} rows hold NaN or inf (first: row {bad[0]}, 0-based); "
                          "fix or drop those rows and their ids")
    return matrix


def read_ids(path: str | Path, option: str, rows: int, vectors: str | Path) -> list[str]:
    """One id per line, aligned with the ``rows`` rows of ``vectors``.

    Only the line ending is stripped; a blank line, an id holding whitespace, a duplicate id or a count that
    differs from ``rows`` raises with the file (and line).
    """
    path = _input_file(path, option)
    ids: list[str] = []
    first_line: dict[str, int] = {}
    with _reading(path, option), open(path, encoding="utf-8-sig", newline=None) as handle:
        for number, line in enumerate(handle, start=1):
            value = line[:-1] if line.endswith("\n") else line
            if not value:
                raise FormatError(path, number, f"{option}: blank line; give exactly one id per line, no blank lines")
            if any(char.isspace() for char in value):
                raise FormatError(path, number, f"{option}: id {value!r} contains whitespace; one id per line, "
                                  "without spaces or tabs")
            if value in first_line:
                raise FormatError(path, number, f"{option}: duplicate id {value!r} (also on line "
                                  f"{first_line[value]}); ids must be unique")
            first_line[value] = number
            ids.append(value)
    if len(ids) != rows:
        raise PolyrankError(f"{path} holds {len(ids)} ids but {vectors} has {rows} rows; give one id per vector "
                            "row, in row order")
    return ids


# ---------------------------------------------------------------------------------------------- training
def lightning_cli(argv: list[str], run: bool = True):
    """The LightningCLI behind ``fit/validate/test/predict`` (``run=False`` parses and instantiates only)."""
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    from polyrank.shared import trainer
    from polyrank.shared.trainer import build_trainer

    class CheckedLightningCLI(LightningCLI):
        def _parse_ckpt_path(self) -> None:
            """LightningCLI reads ``--ckpt_path``'s hyper-parameters while parsing: a bad file is a user error."""
            path = self.config[self.config.subcommand].get("ckpt_path") if self.config.get("subcommand") else None
            if path and Path(path).is_file():
                trainer.check_checkpoint(path)  # one clear error for a truncated, corrupt or unsafe file
            try:
                super()._parse_ckpt_path()
            except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, AttributeError) as exc:
                raise trainer.unreadable_checkpoint_error(path, exc) from exc

    return CheckedLightningCLI(LightningModule, LightningDataModule, subclass_mode_model=True,
                               subclass_mode_data=True, trainer_class=build_trainer, trainer_defaults={"seed": None},
                               seed_everything_default=0, save_config_kwargs={"overwrite": True}, args=argv, run=run,
                               auto_configure_optimizers=False)


# ----------------------------------------------------------------------------------------- plain commands
def index(output: str, corpus: Path | None = None, vectors: Path | None = None, ids: Path | None = None,
          factory: str = "Flat", metric: str = "ip", encoder: str | None = None, batch_size: int = 64,
          overwrite: bool = False, collection: str = "polyrank", ray: str | None = None, actors: int = 2,
          num_gpus: float = 0.0) -> None:
    """Build a candidate store from a BEIR corpus.jsonl (encoded) or from vectors.npy + ids.txt.

    Args:
        output: directory to write the FAISS store to (atomically), or a Milvus location: a milvus-lite ``*.db``
            file or a server URI (``http://host:19530``), whose ``collection`` is (re)built.
        corpus: BEIR ``corpus.jsonl``; texts are ``title + " " + text``, encoded with ``encoder``.
        vectors: a ``.npy`` float32 matrix (n, dim) of finite values, instead of ``corpus``.
        ids: text file with one id per line (no blank lines, no whitespace inside an id, no duplicates),
            one per row of ``vectors``.
        factory: FAISS index factory string (``Flat``, ``HNSW32``, ``IVF1024,Flat``, ``IVF1024,PQ16``).
        metric: ``ip`` (inner product), ``cosine`` or ``l2``.
        encoder: local sentence-encoder directory (default: all-MiniLM-L6-v2 from its PyPI package), or a causal
            LM (``.gguf`` file or ``*ForCausalLM`` folder): Qwen3-Embedding-style last-token embeddings.
        batch_size: encoding batch size.
        overwrite: replace ``output`` even when it is not a store written earlier (a file, another
            directory, a Milvus collection not written by polyrank): ``--overwrite true``. A previous store is
            always replaced.
        collection: the Milvus collection (Milvus outputs only).
        ray: encode the corpus on Ray actors: ``--ray`` (or ``--ray local``) starts a local cluster, ``--ray
            auto`` / ``--ray ray://head:10001`` joins one; same vectors as the local path.
        actors: Ray encoder actors (one model each).
        num_gpus: GPUs per Ray actor (0: CPU actors).
    """
    from polyrank.shared import atomic
    from polyrank.shared.runs import read_beir_corpus
    from polyrank.shared.store import backend_of, create_store

    if (corpus is None) == (vectors is None):
        raise PolyrankError("give exactly one of --corpus (texts to encode) or --vectors (with --ids)")
    _positive(batch_size, "--batch_size")
    _positive(actors, "--actors")
    milvus = backend_of(output) == "milvus"
    if milvus:  # fail before encoding: a collection that polyrank did not write is kept unless --overwrite
        from polyrank.shared.store.milvus import check_replaceable

        if str(output).endswith(".db"):
            _writable_parent(Path(output), "output")
        check_replaceable(output, collection, overwrite)
    else:
        output = Path(output)
        _writable_parent(output, "output")
        atomic.check_replaceable(output, marker="manifest.json", overwrite=overwrite)
    if corpus is not None:
        if ids is not None:
            raise PolyrankError("--ids goes with --vectors; a corpus brings its own ids (the _id field)")
        with _reading(corpus, "--corpus"):
            docs = read_beir_corpus(_input_file(corpus, "--corpus"))
        if not docs:
            raise PolyrankError(f"--corpus {corpus} holds no documents; give a BEIR corpus.jsonl")
        doc_ids = list(docs)
        texts = [f"{d['title']} {d['text']}".strip() for d in docs.values()]
        if ray is not None:
            from polyrank.shared.scale.ray_encode import encode_with_ray

            matrix = encode_with_ray(texts, encoder, batch_size, side="documents", address=ray, actors=actors,
                                     num_gpus=num_gpus, progress=sys.stderr.isatty())
        else:
            matrix = _encode(encoder, batch_size, texts, side="documents")
    else:
        if ray is not None:
            raise PolyrankError("--ray encodes a --corpus; --vectors are already encoded")
        if ids is None:
            raise PolyrankError("--vectors needs --ids: a text file with one id per line, in row order")
        matrix = load_vectors(vectors, "--vectors")
        doc_ids = read_ids(ids, "--ids", len(matrix), vectors)
    if milvus:
        store = create_store(matrix.shape[1], factory, metric, location=output, collection=collection, overwrite=True)
        store.add(doc_ids, matrix)
        store.save()
        store.close()
    else:
        store = create_store(matrix.shape[1], factory, metric)
        if not store.is_trained:
            store.train(matrix)
        store.add(doc_ids, matrix)
        store.save(output, overwrite=overwrite)
    logger.info("indexed %d items (dim %d, %s) into %s", len(doc_ids), matrix.shape[1], factory, output)


def _encode(path: str | None, batch_size: int, texts: list[str], side: Literal["queries", "documents"],
            instruction: str | None = None):
    """Vectors of ``texts``: a sentence encoder (default all-MiniLM-L6-v2), or, when ``path`` is a causal LM (a
    ``.gguf`` or a ``*ForCausalLM`` folder), Qwen3-Embedding-style last-token embeddings with the instruction on
    queries only (:class:`polyrank.shared.llm.embedding.LLMEmbedder`)."""
    from polyrank.shared.llm.embedding import DEFAULT_TASK, LLMEmbedder, is_causal_lm

    if is_causal_lm(path):
        from polyrank.shared.llm.loading import load_causal_lm

        embedder = LLMEmbedder(load_causal_lm(path), task=instruction or DEFAULT_TASK)
        return embedder.encode_queries(texts) if side == "queries" else embedder.encode_documents(texts)
    if instruction is not None:
        raise PolyrankError("--instruction applies to a causal-LM --encoder only (a .gguf or *ForCausalLM folder)")
    from polyrank.shared.text_encoder import SentenceEncoder

    return SentenceEncoder(path, batch_size=batch_size).encode(texts)


def search(store: str, output: Path, queries: Path | None = None, query_vectors: Path | None = None,
           query_ids: Path | None = None, k: int = 100, encoder: str | None = None,
           instruction: str | None = None, collection: str = "polyrank") -> None:
    """Search a candidate store and write a TREC run.

    Args:
        store: directory written by ``polyrank index``, or its Milvus ``*.db`` file / server URI.
        collection: the Milvus collection (Milvus stores only).
        output: TREC run file to write.
        queries: BEIR ``queries.jsonl`` (encoded with ``encoder``, which must match the index's).
        query_vectors: a ``.npy`` (n, dim) matrix of finite values instead of ``queries``.
        query_ids: one query id per line (as ``polyrank index --ids``), one per row of ``query_vectors``.
        k: candidates per query.
        encoder: local sentence-encoder directory (default all-MiniLM-L6-v2), or a causal LM (``.gguf`` file or
            ``*ForCausalLM`` folder) for Qwen3-Embedding-style last-token embeddings; the same one as the index's.
        instruction: with a causal-LM encoder, the task put before each query (``Instruct: {task}\nQuery: {q}``);
            default: web-search passage retrieval.
    """
    from polyrank.shared.runs import read_beir_queries, write_run
    from polyrank.shared.store import open_store

    if (queries is None) == (query_vectors is None):
        raise PolyrankError("give exactly one of --queries (texts to encode) or --query_vectors (with --query_ids)")
    _positive(k, "--k")
    _output_file(output)
    index_store = open_store(store, collection=collection)
    if queries is not None:
        if query_ids is not None:
            raise PolyrankError("--query_ids goes with --query_vectors; a queries.jsonl brings its own ids (_id)")
        with _reading(queries, "--queries"):
            texts = read_beir_queries(_input_file(queries, "--queries"))
        if not texts:
            raise PolyrankError(f"--queries {queries} holds no queries; give a BEIR queries.jsonl")
        qids, matrix = list(texts), _encode(encoder, 64, list(texts.values()), "queries", instruction)
    else:
        if query_ids is None:
            raise PolyrankError("--query_vectors needs --query_ids: one query id per line, in row order")
        matrix = load_vectors(query_vectors, "--query_vectors")
        qids = read_ids(query_ids, "--query_ids", len(matrix), query_vectors)
    run = index_store.search_run(qids, matrix, k)
    write_run(run, output, tag="polyrank-search")
    logger.info("wrote %d queries x %d candidates to %s", len(qids), k, output)


def rerank(reranker: str, run: Path, queries: Path, corpus: Path, output: Path, depth: int = 100,
           batch_size: int = 16, checkpoint: str | None = None, model: str | None = None,
           device: str | None = None, overrides: dict[str, Any] | None = None, ray: str | None = None,
           actors: int = 2, num_gpus: float = 0.0, progress: bool | None = None) -> None:
    """Rerank the top ``depth`` of a first-stage TREC run with a registered (or saved) reranker.

    Args:
        reranker: a name from ``polyrank list`` or a directory written by a reranker's ``save``.
        checkpoint: the ``last.ckpt``/``best-*.ckpt`` that ``polyrank fit`` wrote for this reranker's domain.
        model: the model an LLM reranker runs (a local Hugging Face folder or a ``.gguf`` file), e.g.
            ``polyrank rerank text.pointwise ... --model /models/Qwen3-Reranker-0.6B``.
        device: ``cpu``, ``cuda``... (the reranker's default when omitted).
        overrides: any other builder option as JSON, e.g. ``--overrides '{"window": 10}'`` (unknown ones are an
            error that lists the valid ones).
        run: first-stage TREC run.
        queries: BEIR ``queries.jsonl``; a query's content is its text.
        corpus: BEIR ``corpus.jsonl``; a candidate's content is ``title + " " + text``.
        output: TREC run file to write.
        depth: how many first-stage candidates per query to rerank; the rest keep their order below.
        batch_size: queries scored per call of the reranker.
        ray: score the query batches on Ray actors, each rebuilding the reranker from its name/directory and
            ``--checkpoint`` (paths the workers can read): ``--ray`` (or ``--ray local``) starts a local cluster,
            ``--ray auto`` / ``--ray ray://head:10001`` joins one. Same run as without it.
        actors: Ray actors (one model each).
        num_gpus: GPUs per Ray actor (0: CPU actors; 0.5 puts two actors on a GPU).
        progress: progress bar on stderr (default: when stderr is a terminal).
    """
    from polyrank.shared.protocol import rerank_run
    from polyrank.shared.registry import load
    from polyrank.shared.runs import read_beir_corpus, read_beir_queries, read_run, write_run

    _positive(depth, "--depth")
    _positive(batch_size, "--batch_size")
    _output_file(output)
    with _reading(run, "run"):
        first_stage = read_run(_input_file(run, "run"))
    with _reading(queries, "queries"):
        texts = read_beir_queries(_input_file(queries, "queries"))
    with _reading(corpus, "corpus"):
        docs = read_beir_corpus(_input_file(corpus, "corpus"))
    contents = {d: f"{v['title']} {v['text']}".strip() for d, v in docs.items()}
    options = dict(overrides or {})
    if model is not None:
        options["model"] = model
    _positive(actors, "--actors")
    if ray is not None:
        from polyrank.shared.scale import RerankerSpec

        spec = RerankerSpec(reranker, checkpoint=str(checkpoint) if checkpoint else None, device=device,
                            overrides=options)
        reranked = rerank_run(first_stage, spec, texts, contents, depth, batch_size, ray=ray, actors=actors,
                              num_gpus=num_gpus, progress=progress)
    else:
        built = load(reranker, checkpoint=checkpoint, device=device, **options)
        reranked = rerank_run(first_stage, built, texts, contents, depth, batch_size, progress=progress)
    write_run(reranked, output, tag=f"polyrank-{reranker}")


def _judged(qrels: dict[str, dict[str, int]]) -> list[str]:
    return sorted(q for q, docs in qrels.items() if any(rel > 0 for rel in docs.values()))


def evaluate(run: Path, qrels: Path, measures: list[str] | None = None, baseline: Path | None = None,
             test: Literal["ttest", "wilcoxon", "permutation"] = "ttest", per_query: bool = False,
             missing_as_zero: bool = True) -> None:
    """Evaluate a TREC run against qrels (TREC or BEIR .tsv) and print a table.

    The caption says how many queries are judged (have a relevant document), how many of them the run
    lacks and how those count. With ``--baseline`` the paired test runs over the queries both runs are
    averaged over.

    Args:
        run: TREC run to evaluate.
        qrels: TREC qrels (``qid 0 docid rel``) or BEIR ``qrels/*.tsv``.
        measures: ir-measures names or aliases (default nDCG@10 AP RR@10 R@100).
        baseline: a second run; adds its figures and a paired significance test per measure.
        test: ``ttest``, ``wilcoxon`` or ``permutation``.
        per_query: also print each query's values.
        missing_as_zero: a judged query absent from the run counts as 0 (``true``, trec_eval ``-c``) or is
            skipped (``false``, plain trec_eval).
    """
    from rich.console import Console
    from rich.table import Table

    from polyrank.shared.evaluation import evaluate as run_evaluation
    from polyrank.shared.evaluation import paired_test
    from polyrank.shared.runs import read_beir_qrels, read_qrels, read_run

    names = measures or ["nDCG@10", "AP", "RR@10", "R@100"]
    with _reading(qrels, "qrels"):
        qrels_path = _input_file(qrels, "qrels")
        judgments = read_beir_qrels(qrels_path) if qrels_path.suffix == ".tsv" else read_qrels(qrels_path)
    judged = _judged(judgments)

    def measured(path: Path, what: str):
        with _reading(path, what):
            ranking = read_run(_input_file(path, what))
        result = run_evaluation(ranking, judgments, names, missing_as_zero=missing_as_zero)
        missing = getattr(result, "missing", None)
        return result, sorted(set(judged) - set(ranking)) if missing is None else list(missing)

    result, missing = measured(run, "run")
    base, base_missing = measured(baseline, "--baseline") if baseline else (None, [])
    rule = "missing counted as 0" if missing_as_zero else "missing skipped"
    caption = (f"{len(judged)} judged queries, {len(missing)} missing from the run ({rule}); "
               f"mean over {len(result.queries)} queries")
    common = list(result.queries)
    if base:
        in_base = set(base.queries)
        common = [q for q in result.queries if q in in_base]
        caption += (f"; baseline: {len(base_missing)} missing, mean over {len(base.queries)}; paired {test} test "
                    f"over the {len(common)} queries in both")
    table = Table(title=str(run), caption=caption)
    table.add_column("measure")
    table.add_column("run")
    if base:
        table.add_column("baseline")
        table.add_column(f"p ({test})")
    for name in names:
        row = [name, f"{result.mean[name]:.4f}"]
        if base:
            a = [base.per_query[name][q] for q in common]
            b = [result.per_query[name][q] for q in common]
            p_value = f"{paired_test(a, b, test):.4g}" if len(common) >= 2 else "n/a (< 2 queries)"
            row += [f"{base.mean[name]:.4f}", p_value]
        table.add_row(*row)
    console = Console()
    console.print(table)
    if per_query:
        for qid in result.queries:
            console.print(qid, *(f"{n}={result.per_query[n][qid]:.4f}" for n in names))


def reproduce(path: Path) -> None:
    """Run one paper row from ``configs/<domain>/<row>.yaml`` and print expected vs measured.

    Args:
        path: a reproduction config (see ``shared/reproduce.py`` for the schema).
    """
    from polyrank.shared.report import Table, print_tables, ReportSection
    from polyrank.shared.reproduce import reproduce as run_reproduction

    if Path(path).is_dir():
        raise PolyrankError(f"reproduction config {path} is a directory; give one of its .yaml files")
    with _reading(path, "reproduction config"):
        result = run_reproduction(path)
    table = Table(f"{result.paper}: {result.row}", ["metric", "expected", "measured", "delta", "within tol."],
                  result.rows(), note=f"tolerance {result.tolerance}")
    print_tables([ReportSection(str(path), tables=[table])])


def demo(out: Path = Path("runs/demo"), only: list[str] | None = None, skip_core: bool = False,
         device: str = "cpu") -> None:
    """Run the text pipeline and every installed domain's demo; write ``<out>/report.html``.

    Args:
        out: output directory (report.html, figures, runs).
        only: run only these domains' demos (e.g. ``--only [mtm,ranknovo]``).
        skip_core: skip the core text pipeline (MiniLM + candidate store).
        device: ``cpu`` or ``cuda``.
    """
    from polyrank.shared.demo import run_demos

    _output_dir(out, "--out")
    if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
        raise PolyrankError(f"--device {device!r} is not a device; use cpu, cuda or cuda:<index>")
    if device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise PolyrankError(f"--device {device}: CUDA is not available here; use --device cpu")
    failed = run_demos(Path(out), only=only, skip_core=skip_core, device=device)
    if failed:
        raise PolyrankError(f"demo(s) failed: {', '.join(failed)}; see the log above and {out}/report.html")


def list_rerankers(pattern: str = "*") -> None:
    """List registered rerankers (``domain.method[.variant]``) matching a glob.

    Args:
        pattern: glob over names, e.g. ``"mtm.*"``.
    """
    from polyrank.shared.registry import describe, list_rerankers as names

    for name in names(pattern):
        print(f"{name:32s} {describe(name)}")


COMMANDS = {"index": index, "search": search, "rerank": rerank, "evaluate": evaluate, "reproduce": reproduce,
            "demo": demo, "list": list_rerankers}

_OVERVIEW = """usage: polyrank <command> [options]

training (LightningCLI; see `polyrank fit --help`, configs/<domain>/*.yaml):
  fit, validate, test, predict
retrieval and evaluation:
{rest}
Run `polyrank <command> --help` for a command's options; `polyrank --debug <command> ...` (or
POLYRANK_DEBUG=1) shows the traceback behind an error."""


def _overview() -> str:
    rest = "".join(f"  {name:10s} {(fn.__doc__ or '').strip().splitlines()[0]}\n" for name, fn in COMMANDS.items())
    return _OVERVIEW.format(rest=rest)


def _check_training_configs(argv: list[str]) -> None:
    """Name the file and line when a ``--config`` YAML is not UTF-8 (LightningCLI would not say which)."""
    for position, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--config=") else None
        if arg == "--config" and position + 1 < len(argv):
            value = argv[position + 1]
        if value and Path(value).is_file():
            with _reading(value, "--config"):
                Path(value).read_text(encoding="utf-8")


def _bare_ray(argv: list[str]) -> list[str]:
    """``--ray`` with no address (last, or followed by another option) means ``--ray local``."""
    out = list(argv)
    for position in range(len(out) - 1, -1, -1):
        if out[position] == "--ray" and (position + 1 == len(out) or out[position + 1].startswith("--")):
            out.insert(position + 1, "local")
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``polyrank`` command; returns the exit status (2 on a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("POLYRANK_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
    setup_logging()
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview())
        return 0
    try:
        if argv[0] in TRAINING_COMMANDS:
            _check_training_configs(argv)
            lightning_cli(argv)
            return 0
        from jsonargparse import CLI

        CLI(COMMANDS, args=_bare_ray(argv))
        return 0
    except _USER_ERRORS as exc:
        if debug:
            raise
        print(f"polyrank: error: {describe_error(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
