"""Every `polyrank` subcommand on bad input: exit status 2, one error line, never a traceback (issue 9).

Each bad case changes one argument of an invocation that works (``test_good_paths`` runs those), so a case
fails for the reason it names. Bad input is: missing required arguments, wrong-type values, nonexistent
paths, a directory where a file is expected, an unwritable output (a path under a regular *file*, which
fails even for root, and an existing directory given as an output file), malformed files (non-UTF-8 text,
truncated JSON/.npy/checkpoints, bad records). A case is ``usage`` when jsonargparse rejects the arguments
(its usage text and an ``error:`` line, status 2) and ``error`` when polyrank prints exactly one
``polyrank: error: ...`` line. Most cases run in-process through :func:`polyrank.shared.cli.main`; a few go
through the installed ``polyrank`` executable to prove the exit status end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from polyrank.shared.cli import main
from polyrank.shared.protocol import Reranker
from polyrank.shared.registry import register_reranker

TINY = Path(__file__).parents[1] / "helpers" / "tiny.yaml"
BAD_UTF8 = b"q1 Q0 d1 1 1.0 caf\xe9\n"  # Latin-1, not UTF-8


class WordOverlap(Reranker):
    """Scores a candidate by the query words it contains (a reranker that needs no model)."""

    def score(self, query, candidates):
        words = set(str(query).split())
        return np.array([len(words & set(str(c.content).split())) for c in candidates], float)


register_reranker("testing.sweep_overlap")(lambda **kw: WordOverlap())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Good inputs plus one malformed variant of each; ``{name: path}`` for the case templates."""
    d = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((6, 4)).astype(np.float32)
    np.save(d / "vec.npy", docs)
    np.save(d / "qvec.npy", docs[:2] + 0.01)
    np.save(d / "qvec3.npy", docs[:2, :3])
    np.save(d / "vec1d.npy", docs[0])
    np.save(d / "vecnan.npy", np.where(np.eye(6, 4, dtype=bool), np.nan, docs))
    (d / "vectrunc.npy").write_bytes((d / "vec.npy").read_bytes()[:150])
    (d / "ids.txt").write_text("".join(f"d{i}\n" for i in range(6)))
    (d / "ids_space.txt").write_text("d0\nd1 d2\nd3\nd4\nd5\n")
    (d / "ids_blank.txt").write_text("d0\nd1\n\nd3\nd4\nd5\n")
    (d / "ids_dup.txt").write_text("d0\nd1\nd2\nd3\nd4\nd1\n")
    (d / "ids_short.txt").write_text("d0\nd1\nd2\n")
    (d / "qids.txt").write_text("q0\nq1\n")
    (d / "bad_utf8.txt").write_bytes(BAD_UTF8)
    corpus = [{"_id": f"d{i}", "title": "", "text": f"word{i} common"} for i in range(6)]
    (d / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (d / "trunc.jsonl").write_text(json.dumps(corpus[0]) + "\n" + json.dumps(corpus[1])[:12] + "\n")
    (d / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"word{i}"}) + "\n" for i in (0, 1)))
    (d / "run.trec").write_text("".join(f"q{q} Q0 d{i} {i + 1} {6 - i}.0 bm25\n" for q in (0, 1) for i in range(6)))
    (d / "run_5col.trec").write_text("q0 Q0 d0 1 1.0\n")
    (d / "run_other_ids.trec").write_text("x9 Q0 d0 1 1.0 bm25\n")
    (d / "qrels.txt").write_text("q0 0 d0 1\nq1 0 d1 1\n")
    (d / "qrels_bad.txt").write_text("q0 0 d0 relevant\n")
    (d / "a_file").write_text("a regular file\n")
    (d / "a_dir").mkdir()
    (d / "full_dir").mkdir()
    (d / "full_dir" / "keep.txt").write_text("not a store\n")
    (d / "row.yaml").write_text(f"""paper: "Test et al."
table: "Table 1"
row: "fixed run"
expected: {{MRR: 0.75}}
tolerance: 0.5
reproduction:
  class_path: tiny_reproduction.RunFileRow
  init_args: {{run_path: {d / 'run.trec'}, qrels_path: {d / 'qrels.txt'}}}
""")
    (d / "row_unknown_key.yaml").write_text((d / "row.yaml").read_text() + "surprise: 1\n")
    (d / "row_broken.yaml").write_text("paper: [unclosed\n")
    (d / "row_utf8.yaml").write_bytes(b"paper: caf\xe9\n")
    (d / "tiny_unknown_key.yaml").write_text(TINY.read_text().replace("    lr: 0.05", "    lr: 0.05\n    learnrate: 1"))
    (d / "tiny_utf8.yaml").write_bytes(TINY.read_bytes() + b"# caf\xe9\n")
    (d / "trunc.ckpt").write_bytes(b"PK\x03\x04 a checkpoint cut short")
    assert main(["index", str(d / "store"), "--vectors", str(d / "vec.npy"), "--ids", str(d / "ids.txt")]) == 0
    shutil.copytree(d / "store", d / "store_trunc")
    manifest = d / "store_trunc" / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    paths = {p.name.replace(".", "_"): str(p) for p in d.iterdir()}
    paths["tmp"] = str(d)
    paths["tiny"] = str(TINY)
    return paths


USAGE, ERROR = "usage", "error"
SEARCH = ["search", "{store}", "{tmp}/out.trec", "--query_vectors", "{qvec_npy}", "--query_ids", "{qids_txt}",
          "--k", "3"]
RERANK = ["rerank", "testing.sweep_overlap", "{run_trec}", "{queries_jsonl}", "{corpus_jsonl}", "{tmp}/re.trec",
          "--depth", "3"]
EVALUATE = ["evaluate", "{run_trec}", "{qrels_txt}", "--measures", "[MRR,nDCG@10]"]
FIT = ["fit", "--config", "{tiny}", "--trainer.default_root_dir", "{tmp}/train"]


def _index(output="{tmp}/new_store", vectors="{vec_npy}", ids="{ids_txt}", *extra):
    return ["index", output, "--vectors", vectors, "--ids", ids, *extra]


def _swap(argv, old, new):
    return [new if a == old else a for a in argv]


CASES = [  # (case id, expected kind, argv template)
    # index
    ("index/no-arguments", USAGE, ["index"]),
    ("index/no-source", ERROR, ["index", "{tmp}/new_store"]),
    ("index/vectors-without-ids", ERROR, ["index", "{tmp}/new_store", "--vectors", "{vec_npy}"]),
    ("index/corpus-and-vectors", ERROR, _index() + ["--corpus", "{corpus_jsonl}"]),
    ("index/batch-size-not-int", USAGE, _index() + ["--batch_size", "many"]),
    ("index/batch-size-zero", ERROR, _index() + ["--batch_size", "0"]),
    ("index/overwrite-not-bool", USAGE, _index() + ["--overwrite", "maybe"]),
    ("index/vectors-missing", ERROR, _index(vectors="{tmp}/nope.npy")),
    ("index/vectors-directory", ERROR, _index(vectors="{a_dir}")),
    ("index/vectors-1d", ERROR, _index(vectors="{vec1d_npy}")),
    ("index/vectors-nan", ERROR, _index(vectors="{vecnan_npy}")),
    ("index/vectors-truncated", ERROR, _index(vectors="{vectrunc_npy}")),
    ("index/vectors-text-file", ERROR, _index(vectors="{ids_txt}")),
    ("index/ids-inner-space", ERROR, _index(ids="{ids_space_txt}")),
    ("index/ids-blank-line", ERROR, _index(ids="{ids_blank_txt}")),
    ("index/ids-duplicate", ERROR, _index(ids="{ids_dup_txt}")),
    ("index/ids-count", ERROR, _index(ids="{ids_short_txt}")),
    ("index/ids-not-utf8", ERROR, _index(ids="{bad_utf8_txt}")),
    ("index/ids-directory", ERROR, _index(ids="{a_dir}")),
    ("index/corpus-truncated-json", ERROR, ["index", "{tmp}/new_store", "--corpus", "{trunc_jsonl}"]),
    ("index/corpus-not-utf8", ERROR, ["index", "{tmp}/new_store", "--corpus", "{bad_utf8_txt}"]),
    ("index/corpus-missing", ERROR, ["index", "{tmp}/new_store", "--corpus", "{tmp}/nope.jsonl"]),
    ("index/corpus-directory", ERROR, ["index", "{tmp}/new_store", "--corpus", "{a_dir}"]),
    ("index/output-under-a-file", ERROR, _index(output="{a_file}/store")),
    ("index/output-is-a-file", ERROR, _index(output="{a_file}")),
    ("index/output-foreign-directory", ERROR, _index(output="{full_dir}")),
    ("index/bad-factory", ERROR, _index() + ["--factory", "NoSuchIndex"]),
    ("index/bad-metric", ERROR, _index() + ["--metric", "manhattan"]),
    # search
    ("search/no-arguments", USAGE, ["search"]),
    ("search/k-not-int", USAGE, _swap(SEARCH, "3", "three")),
    ("search/k-zero", ERROR, _swap(SEARCH, "3", "0")),
    ("search/no-query-source", ERROR, SEARCH[:3]),
    ("search/store-missing", ERROR, _swap(SEARCH, "{store}", "{tmp}/no_store")),
    ("search/store-is-a-file", ERROR, _swap(SEARCH, "{store}", "{a_file}")),
    ("search/store-truncated-manifest", ERROR, _swap(SEARCH, "{store}", "{store_trunc}")),
    ("search/output-is-a-directory", ERROR, _swap(SEARCH, "{tmp}/out.trec", "{a_dir}")),
    ("search/output-under-a-file", ERROR, _swap(SEARCH, "{tmp}/out.trec", "{a_file}/out.trec")),
    ("search/query-dim-mismatch", ERROR, _swap(SEARCH, "{qvec_npy}", "{qvec3_npy}")),
    ("search/query-ids-count", ERROR, _swap(SEARCH, "{qids_txt}", "{ids_txt}")),
    ("search/query-ids-not-utf8", ERROR, _swap(SEARCH, "{qids_txt}", "{bad_utf8_txt}")),
    ("search/queries-truncated-json", ERROR, SEARCH[:3] + ["--queries", "{trunc_jsonl}"]),
    ("search/queries-not-utf8", ERROR, SEARCH[:3] + ["--queries", "{bad_utf8_txt}"]),
    # rerank
    ("rerank/no-arguments", USAGE, ["rerank"]),
    ("rerank/depth-not-int", USAGE, _swap(RERANK, "3", "deep")),
    ("rerank/depth-zero", ERROR, _swap(RERANK, "3", "0")),
    ("rerank/batch-size-zero", ERROR, RERANK + ["--batch_size", "0"]),
    ("rerank/unknown-reranker", ERROR, _swap(RERANK, "testing.sweep_overlap", "nosuch.reranker")),
    ("rerank/run-missing", ERROR, _swap(RERANK, "{run_trec}", "{tmp}/nope.trec")),
    ("rerank/run-directory", ERROR, _swap(RERANK, "{run_trec}", "{a_dir}")),
    ("rerank/run-not-utf8", ERROR, _swap(RERANK, "{run_trec}", "{bad_utf8_txt}")),
    ("rerank/run-5-columns", ERROR, _swap(RERANK, "{run_trec}", "{run_5col_trec}")),
    ("rerank/run-queries-unknown", ERROR, _swap(RERANK, "{run_trec}", "{run_other_ids_trec}")),
    ("rerank/queries-truncated-json", ERROR, _swap(RERANK, "{queries_jsonl}", "{trunc_jsonl}")),
    ("rerank/corpus-missing", ERROR, _swap(RERANK, "{corpus_jsonl}", "{tmp}/nope.jsonl")),
    ("rerank/corpus-not-utf8", ERROR, _swap(RERANK, "{corpus_jsonl}", "{bad_utf8_txt}")),
    ("rerank/output-is-a-directory", ERROR, _swap(RERANK, "{tmp}/re.trec", "{a_dir}")),
    ("rerank/output-under-a-file", ERROR, _swap(RERANK, "{tmp}/re.trec", "{a_file}/re.trec")),
    # evaluate
    ("evaluate/no-arguments", USAGE, ["evaluate"]),
    ("evaluate/bad-test-choice", USAGE, EVALUATE + ["--test", "chisquare"]),
    ("evaluate/missing-as-zero-not-bool", USAGE, EVALUATE + ["--missing_as_zero", "perhaps"]),
    ("evaluate/unknown-measure", ERROR, _swap(EVALUATE, "[MRR,nDCG@10]", "[MRR,nDCG@ten]")),
    ("evaluate/run-missing", ERROR, _swap(EVALUATE, "{run_trec}", "{tmp}/nope.trec")),
    ("evaluate/run-directory", ERROR, _swap(EVALUATE, "{run_trec}", "{a_dir}")),
    ("evaluate/run-not-utf8", ERROR, _swap(EVALUATE, "{run_trec}", "{bad_utf8_txt}")),
    ("evaluate/run-shares-no-query", ERROR, _swap(EVALUATE, "{run_trec}", "{run_other_ids_trec}")),
    ("evaluate/qrels-missing", ERROR, _swap(EVALUATE, "{qrels_txt}", "{tmp}/nope.txt")),
    ("evaluate/qrels-directory", ERROR, _swap(EVALUATE, "{qrels_txt}", "{a_dir}")),
    ("evaluate/qrels-bad-relevance", ERROR, _swap(EVALUATE, "{qrels_txt}", "{qrels_bad_txt}")),
    ("evaluate/baseline-missing", ERROR, EVALUATE + ["--baseline", "{tmp}/nope.trec"]),
    ("evaluate/baseline-not-utf8", ERROR, EVALUATE + ["--baseline", "{bad_utf8_txt}"]),
    # reproduce
    ("reproduce/no-arguments", USAGE, ["reproduce"]),
    ("reproduce/config-missing", ERROR, ["reproduce", "{tmp}/nope.yaml"]),
    ("reproduce/config-directory", ERROR, ["reproduce", "{a_dir}"]),
    ("reproduce/config-not-utf8", ERROR, ["reproduce", "{row_utf8_yaml}"]),
    ("reproduce/config-broken-yaml", ERROR, ["reproduce", "{row_broken_yaml}"]),
    ("reproduce/config-unknown-key", ERROR, ["reproduce", "{row_unknown_key_yaml}"]),
    # demo (only bad arguments: the real demo is slow)
    ("demo/unknown-demo", ERROR, ["demo", "--only", "[nosuchdomain]", "--out", "{tmp}/demo"]),
    ("demo/bad-device", ERROR, ["demo", "--device", "tpu", "--out", "{tmp}/demo"]),
    ("demo/out-is-a-file", ERROR, ["demo", "--out", "{a_file}"]),
    ("demo/out-under-a-file", ERROR, ["demo", "--out", "{a_file}/demo"]),
    ("demo/skip-core-not-bool", USAGE, ["demo", "--skip_core", "sometimes"]),
    # list and the top level
    ("list/extra-argument", USAGE, ["list", "mtm.*", "extra"]),
    ("list/pattern-without-value", USAGE, ["list", "--pattern"]),
    ("top/unknown-command", USAGE, ["frobnicate"]),
    # training (LightningCLI)
    ("fit/no-config", USAGE, ["fit", "--trainer.default_root_dir", "{tmp}/train"]),
    ("fit/config-missing", USAGE, _swap(FIT, "{tiny}", "{tmp}/nope.yaml")),
    ("fit/config-directory", USAGE, _swap(FIT, "{tiny}", "{a_dir}")),
    ("fit/config-not-utf8", ERROR, _swap(FIT, "{tiny}", "{tiny_utf8_yaml}")),
    ("fit/config-unknown-key", USAGE, _swap(FIT, "{tiny}", "{tiny_unknown_key_yaml}")),
    ("fit/max-epochs-not-int", USAGE, FIT + ["--trainer.max_epochs", "two"]),
    ("fit/resume-last-with-nothing", ERROR, _swap(FIT, "{tmp}/train", "{tmp}/empty_run") + ["--ckpt_path", "last"]),
    ("fit/root-under-a-file", ERROR, _swap(FIT, "{tmp}/train", "{a_file}/train")),
    ("validate/ckpt-missing", ERROR, ["validate", *FIT[1:], "--ckpt_path", "{tmp}/nope.ckpt"]),
    ("test/ckpt-truncated", ERROR, ["test", *FIT[1:], "--ckpt_path", "{trunc_ckpt}"]),
    ("predict/ckpt-directory", ERROR, ["predict", *FIT[1:], "--ckpt_path", "{a_dir}"]),
]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as exit_info:  # jsonargparse's usage errors
        status = exit_info.code
    return status, capsys.readouterr().err


def _check(kind: str, status: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert status == 2, f"exit status {status}; stderr:\n{err}"
    ours = [line for line in err.splitlines() if line.startswith("polyrank: error:")]
    if kind == ERROR:
        assert len(ours) == 1, f"expected one 'polyrank: error:' line:\n{err}"
        assert len(ours[0]) > len("polyrank: error: ") + 10
    else:
        assert not ours and "usage:" in err and any(line.startswith("error:") for line in err.splitlines()), err


class DemoRan(BaseException):
    """Raised by stand-in demos: bad demo arguments must be refused before any demo runs (they are slow)."""


def _no_demo_may_run(monkeypatch) -> None:
    def ran(ctx):
        raise DemoRan("a demo started although the arguments were bad")

    monkeypatch.setattr("polyrank.shared.demo.run_text_pipeline", ran)
    monkeypatch.setattr("polyrank.shared.registry.demo_entry_points", lambda: {"mtm": ran, "ranknovo": ran})


@pytest.mark.parametrize("case, kind, template", CASES, ids=[c[0] for c in CASES])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bad_input_exits_2_with_one_error_line(files, capsys, monkeypatch, case, kind, template):
    _no_demo_may_run(monkeypatch)
    argv = [arg.format(**files) for arg in template]
    leftover = Path(files["tmp"], "new_store")
    try:
        status, err = _run(argv, capsys)
    finally:
        written = leftover.exists()
        shutil.rmtree(leftover, ignore_errors=True)  # keep the cases independent
    _check(kind, status, err)
    assert not written, "a failed index must leave nothing behind"


def test_bad_input_leaves_existing_files_alone(files):
    assert Path(files["a_file"]).read_text() == "a regular file\n"
    assert sorted(os.listdir(files["full_dir"])) == ["keep.txt"] and not os.listdir(files["a_dir"])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_good_paths(files, capsys):
    """The invocations the bad cases are derived from all work (so each bad case fails for its own reason)."""
    from polyrank.shared.runs import read_run

    fmt = [[arg.format(**files) for arg in argv] for argv in (_index(), SEARCH, RERANK, EVALUATE)]
    for argv in fmt:
        status, err = _run(argv, capsys)
        assert status == 0 and "polyrank: error" not in err, (argv, err)
    assert max((run := read_run(Path(files["tmp"], "re.trec")))["q0"], key=run["q0"].get) == "d0"
    shutil.rmtree(Path(files["tmp"], "new_store"))
    assert main(["reproduce", files["row_yaml"]]) == 0 and main(["list", "--pattern", "testing.*"]) == 0
    assert "testing.sweep_overlap" in capsys.readouterr().out


def _polyrank() -> str:
    executable = Path(sys.executable).parent / "polyrank"
    if not executable.is_file():
        pytest.skip(f"no installed polyrank executable beside {sys.executable}")
    return str(executable)


@pytest.mark.parametrize("case", ["evaluate/run-not-utf8", "index/output-under-a-file", "search/k-not-int",
                                  "reproduce/config-directory"])
def test_exit_status_end_to_end(files, case):
    """Through a real process: status 2, and stderr has no traceback."""
    kind, template = next((k, t) for c, k, t in CASES if c == case)
    env = dict(os.environ, POLYRANK_LOG_LEVEL="WARNING")
    env.pop("POLYRANK_DEBUG", None)
    proc = subprocess.run([_polyrank(), *(arg.format(**files) for arg in template)], capture_output=True,
                          text=True, env=env, timeout=120)
    _check(kind, proc.returncode, proc.stderr)


def test_debug_switch_shows_the_traceback(files):
    env = dict(os.environ, POLYRANK_LOG_LEVEL="WARNING", POLYRANK_DEBUG="1")
    proc = subprocess.run([_polyrank(), "reproduce", files["a_dir"]], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "PolyrankError" in proc.stderr
