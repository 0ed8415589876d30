"""The `polyrank` command end to end: training via LightningCLI, index/search/evaluate, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polyrank.shared.cli import main
from polyrank.shared.errors import PolyrankError
from polyrank.shared.runs import read_run, write_qrels

TINY = str(Path(__file__).parents[1] / "helpers" / "tiny.yaml")


def test_fit_then_resume_validate_and_predict(tmp_path, capsys):
    root = str(tmp_path)
    assert main(["fit", "--config", TINY, "--trainer.default_root_dir", root]) == 0
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert main(["fit", "--config", TINY, "--trainer.default_root_dir", root, "--trainer.max_epochs", "3",
                 "--ckpt_path", "last"]) == 0
    assert main(["validate", "--config", TINY, "--trainer.default_root_dir", root, "--ckpt_path", str(last)]) == 0
    assert main(["predict", "--config", TINY, "--trainer.default_root_dir", root, "--ckpt_path", str(last)]) == 0


def test_print_config_and_strict_unknown_keys(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", TINY, "--print_config"])
    assert exit_info.value.code == 0
    assert "class_path: tiny_lightning.TinyRegressor" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(TINY).read_text().replace("    lr: 0.05", "    lr: 0.05\n    learning_rate: 1"))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(bad)])
    assert exit_info.value.code != 0
    assert "learning_rate" in capsys.readouterr().err


def test_index_search_evaluate_on_vectors(tmp_path, capsys):
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((50, 8)).astype(np.float32)
    np.save(tmp_path / "docs.npy", docs)
    (tmp_path / "ids.txt").write_text("\n".join(f"d{i}" for i in range(50)))
    np.save(tmp_path / "q.npy", docs[:5] + 0.01)
    (tmp_path / "qids.txt").write_text("\n".join(f"q{i}" for i in range(5)))
    store = str(tmp_path / "store")
    assert main(["index", store, "--vectors", str(tmp_path / "docs.npy"), "--ids", str(tmp_path / "ids.txt"),
                 "--metric", "l2"]) == 0
    run_path = tmp_path / "run.trec"
    assert main(["search", store, str(run_path), "--query_vectors", str(tmp_path / "q.npy"),
                 "--query_ids", str(tmp_path / "qids.txt"), "--k", "10"]) == 0
    run = read_run(run_path)
    assert all(max(run[f"q{i}"], key=run[f"q{i}"].get) == f"d{i}" for i in range(5))
    write_qrels({f"q{i}": {f"d{i}": 1} for i in range(5)}, tmp_path / "qrels.txt")
    capsys.readouterr()
    assert main(["evaluate", str(run_path), str(tmp_path / "qrels.txt"), "--measures", "[MRR,HIT@1]",
                 "--baseline", str(run_path)]) == 0
    out = capsys.readouterr().out
    assert "MRR" in out and "1.0000" in out


def test_user_errors_print_one_line(tmp_path, capsys):
    assert main(["reproduce", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polyrank: error: reproduction config")
    (tmp_path / "r.trec").write_text("q1 Q0 d1 1\n")
    (tmp_path / "q.txt").write_text("q1 0 d1 1\n")
    assert main(["evaluate", str(tmp_path / "r.trec"), str(tmp_path / "q.txt")]) == 2
    assert "r.trec:1: expected 6 columns" in capsys.readouterr().err


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "index", "search", "rerank", "evaluate", "reproduce", "demo", "list"):
        assert command in out
    for command in ("index", "search", "rerank", "evaluate", "reproduce", "demo", "list"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0


def _row_config(tmp_path, expected_mrr):
    config = tmp_path / "row.yaml"
    config.write_text(f"""# Test paper, Table 1: MRR of a fixed run
paper: "Test et al. 2024"
table: "Table 1"
row: "fixed run"
expected: {{MRR: {expected_mrr}, HIT@1: 0.5}}
tolerance: 0.01
reproduction:
  class_path: tiny_reproduction.RunFileRow
  init_args:
    run_path: {tmp_path / 'run.trec'}
    qrels_path: {tmp_path / 'qrels.txt'}
""")
    return config


def test_reproduce_prints_expected_vs_measured(tmp_path, capsys):
    config = _row_config(tmp_path, 0.75)
    assert main(["reproduce", str(config)]) == 2
    assert "cannot run, missing:" in capsys.readouterr().err
    (tmp_path / "run.trec").write_text("q1 Q0 a 1 2 t\nq1 Q0 b 2 1 t\nq2 Q0 c 1 2 t\nq2 Q0 d 2 1 t\n")
    write_qrels({"q1": {"a": 1}, "q2": {"d": 1}}, tmp_path / "qrels.txt")
    assert main(["reproduce", str(config)]) == 0
    out = capsys.readouterr().out
    assert "MRR" in out and "0.7500" in out and "yes" in out
    config.write_text(config.read_text().replace("tolerance: 0.01", "tolerance: 0.01\nsurprise: 1"))
    assert main(["reproduce", str(config)]) == 2
    assert "surprise" in capsys.readouterr().err


def test_rerank_command_with_a_registered_reranker(tmp_path):
    from test_protocol import Overlap  # a tiny word-overlap reranker registered by name below

    from polyrank.shared.registry import register_reranker

    register_reranker("testing.cli_overlap")(lambda **kw: Overlap(**kw))
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in [
        {"_id": "d1", "title": "", "text": "blue sky"}, {"_id": "d2", "title": "red", "text": "fox"}]))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "red fox"}))
    (tmp_path / "first.trec").write_text("q1 Q0 d1 1 2.0 bm25\nq1 Q0 d2 2 1.0 bm25\n")
    out = tmp_path / "reranked.trec"
    assert main(["rerank", "testing.cli_overlap", str(tmp_path / "first.trec"), str(tmp_path / "queries.jsonl"),
                 str(tmp_path / "corpus.jsonl"), str(out), "--depth", "2"]) == 0
    run = read_run(out)["q1"]
    assert max(run, key=run.get) == "d2"


# ------------------------------------------------------------------------- issue 9: user errors, outputs
def _error_line(capsys) -> str:
    """The one ``polyrank: error:`` line of stderr (asserting there is exactly one and no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("polyrank: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _vectors(tmp_path, rows=4, dim=3, name="v.npy"):
    matrix = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    np.save(tmp_path / name, matrix)
    return str(tmp_path / name)


@pytest.mark.parametrize("text, message", [
    ("d0\nd1 x\nd2\nd3\n", "ids.txt:2: --ids: id 'd1 x' contains whitespace"),
    ("d0\n\nd2\nd3\n", "ids.txt:2: --ids: blank line"),
    ("d0\nd1\nd0\nd3\n", "ids.txt:3: --ids: duplicate id 'd0' (also on line 1)"),
    ("d0\nd1\nd2\n", "ids.txt holds 3 ids but"),
    ("d0\td1\nd2\nd3\nd4\n", "ids.txt:1: --ids: id 'd0\\td1' contains whitespace"),
])
def test_index_reads_ids_one_per_line(tmp_path, capsys, text, message):
    """Bug: ``split()`` made 'd1 x' two ids, misaligned with the vector rows, and never checked the count."""
    (tmp_path / "ids.txt").write_text(text)
    ids = str(tmp_path / "ids.txt")
    assert main(["index", str(tmp_path / "s"), "--vectors", _vectors(tmp_path), "--ids", ids]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "s").exists()


def test_ids_keep_inner_characters_and_strip_only_line_endings(tmp_path, capsys):
    """CRLF endings are not part of the ids; search --query_ids is read the same way."""
    vectors = _vectors(tmp_path, rows=3, dim=4)
    (tmp_path / "ids.txt").write_bytes(b"doc-1\r\ndoc#2\r\nd\xc3\xa9j\xc3\xa0\r\n")
    store = str(tmp_path / "store")
    assert main(["index", store, "--vectors", vectors, "--ids", str(tmp_path / "ids.txt"), "--metric", "l2"]) == 0
    (tmp_path / "qids.txt").write_text("q 1\nq2\nq3\n")
    out = tmp_path / "run.trec"
    qids = str(tmp_path / "qids.txt")
    args = ["search", store, str(out), "--query_vectors", vectors, "--query_ids", qids, "--k", "3"]
    assert main(args) == 2
    assert "qids.txt:1: --query_ids: id 'q 1' contains whitespace" in _error_line(capsys)
    (tmp_path / "qids.txt").write_text("q1\nq2\n")
    assert main(args) == 2
    assert "qids.txt holds 2 ids but" in _error_line(capsys) and not out.exists()
    (tmp_path / "qids.txt").write_text("q1\nq2\nq3")  # no final line ending
    assert main(args) == 0
    run = read_run(out)
    assert sorted(run) == ["q1", "q2", "q3"] and max(run["q3"], key=run["q3"].get) == "déjà"
    assert set(run["q1"]) == {"doc-1", "doc#2", "déjà"}


@pytest.mark.parametrize("matrix, message", [
    (np.ones(3, np.float32), "expected a 2-D (n, dim) matrix with n, dim >= 1, got shape (3,)"),
    (np.array([[1.0, np.nan], [0.0, 1.0]], np.float32), "1 rows hold NaN or inf (first: row 0"),
    (np.array([[1.0, 2.0], [np.inf, 1.0]], np.float32), "1 rows hold NaN or inf (first: row 1"),
    (np.zeros((0, 3), np.float32), "got shape (0, 3)"),
    (np.array([["a", "b"]]), "is not a real number type"),
])
def test_index_checks_the_vectors(tmp_path, capsys, matrix, message):
    """Bug: a 1-D .npy raised IndexError (traceback); NaN/inf went into the index silently."""
    np.save(tmp_path / "v.npy", matrix)
    (tmp_path / "ids.txt").write_text("\n".join(f"d{i}" for i in range(max(1, len(matrix)))))
    assert main(["index", str(tmp_path / "s"), "--vectors", str(tmp_path / "v.npy"), "--ids",
                 str(tmp_path / "ids.txt")]) == 2
    line = _error_line(capsys)
    assert "v.npy: --vectors: " in line and message in line


def test_index_refuses_a_pickle_or_a_text_file_as_vectors(tmp_path, capsys):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "ids.txt").write_text("d0\n")
    for vectors in (tmp_path / "obj.npy", tmp_path / "ids.txt"):
        assert main(["index", str(tmp_path / "s"), "--vectors", str(vectors), "--ids", str(tmp_path / "ids.txt")]) == 2
        line = _error_line(capsys)
        assert "not a readable .npy array" in line and "allow_pickle" not in line  # never advise unsafe loading


def test_index_overwrite(tmp_path, capsys):
    """`index OUT` replaces only a previous store unless --overwrite is given."""
    from polyrank.shared.store import CandidateStore

    vectors = _vectors(tmp_path)
    (tmp_path / "ids.txt").write_text("a\nb\nc\nd\n")
    ids = str(tmp_path / "ids.txt")
    target = tmp_path / "notes.txt"
    target.write_text("precious")
    assert main(["index", str(target), "--vectors", vectors, "--ids", ids]) == 2
    assert "--overwrite" in _error_line(capsys) and target.read_text() == "precious"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    assert main(["index", str(tmp_path / "other"), "--vectors", vectors, "--ids", ids]) == 2
    assert (tmp_path / "other" / "keep.txt").is_file()
    capsys.readouterr()
    assert main(["index", str(target), "--vectors", vectors, "--ids", ids, "--overwrite", "true"]) == 0
    assert len(CandidateStore.load(target)) == 4
    assert main(["index", str(target), "--vectors", vectors, "--ids", ids]) == 0  # a previous store: replaced


def test_outputs_fail_fast_before_the_reranker_is_built(tmp_path, capsys):
    """Bug: a directory or a path under a file as output failed only after reranking, with a traceback."""
    from polyrank.shared.registry import register_reranker

    built = []
    register_reranker("testing.cli_never_built")(lambda **kw: built.append(kw))
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "text": "x"}))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "x"}))
    (tmp_path / "first.trec").write_text("q1 Q0 d1 1 2.0 bm25\n")
    (tmp_path / "a_file").write_text("")
    inputs = [str(tmp_path / n) for n in ("first.trec", "queries.jsonl", "corpus.jsonl")]
    for output, message in ((tmp_path, "is a directory; give a file path"),
                            (tmp_path / "a_file" / "out.trec", "a_file is a file, not a directory")):
        assert main(["rerank", "testing.cli_never_built", *inputs, str(output)]) == 2
        assert message in _error_line(capsys)
    assert built == []


def test_search_refuses_a_directory_as_output(tmp_path, capsys):
    vectors = _vectors(tmp_path)
    (tmp_path / "ids.txt").write_text("a\nb\nc\nd\n")
    assert main(["index", str(tmp_path / "s"), "--vectors", vectors, "--ids", str(tmp_path / "ids.txt")]) == 0
    (tmp_path / "out").mkdir()
    assert main(["search", str(tmp_path / "s"), str(tmp_path / "out"), "--query_vectors", vectors, "--query_ids",
                 str(tmp_path / "ids.txt"), "--k", "2"]) == 2
    assert "out is a directory" in _error_line(capsys)


def _caption(capsys) -> str:
    return " ".join(capsys.readouterr().out.split())  # rich wraps the caption at the console width


def _eval_files(tmp_path):
    run = tmp_path / "run.trec"  # q1..q4 found at rank 1, q5 absent from the run
    run.write_text("".join(f"q{i} Q0 d{i} 1 1.0 t\nq{i} Q0 x 2 0.5 t\n" for i in range(1, 5)))
    write_qrels({f"q{i}": {f"d{i}": 1} for i in range(1, 6)} | {"q6": {"d6": 0}}, tmp_path / "qrels.txt")
    return str(run), str(tmp_path / "qrels.txt")


@pytest.mark.filterwarnings("ignore:the run lacks")
def test_evaluate_shows_missing_queries_and_the_rule(tmp_path, capsys):
    run, qrels = _eval_files(tmp_path)
    assert main(["evaluate", run, qrels, "--measures", "[MRR]"]) == 0
    out = _caption(capsys)
    assert "5 judged queries, 1 missing from the run (missing counted as 0); mean over 5 queries" in out
    assert "0.8000" in out
    assert main(["evaluate", run, qrels, "--measures", "[MRR]", "--missing_as_zero", "false"]) == 0
    out = _caption(capsys)
    assert "5 judged queries, 1 missing from the run (missing skipped); mean over 4 queries" in out
    assert "1.0000" in out


@pytest.mark.filterwarnings("ignore:the run lacks")
def test_evaluate_baseline_p_value_over_the_same_queries(tmp_path, capsys):
    """Bug: with skipped missing queries, the paired test indexed the baseline with the run's queries."""
    from polyrank.shared.evaluation import paired_test

    run, qrels = _eval_files(tmp_path)
    base = tmp_path / "base.trec"  # q1, q2 at rank 2, q3 at rank 1, q4 absent, q5 at rank 1
    base.write_text("q1 Q0 x 1 1 t\nq1 Q0 d1 2 0 t\nq2 Q0 x 1 1 t\nq2 Q0 d2 2 0 t\nq3 Q0 d3 1 1 t\nq5 Q0 d5 1 1 t\n")
    assert main(["evaluate", run, qrels, "--measures", "[MRR]", "--baseline", str(base),
                 "--missing_as_zero", "false"]) == 0
    out = _caption(capsys)
    expected = paired_test([0.5, 0.5, 1.0], [1.0, 1.0, 1.0], "ttest")  # q1..q3, in both runs
    assert "paired ttest test over the 3 queries in both" in out and f"{expected:.4g}" in out
    assert main(["evaluate", run, qrels, "--measures", "[MRR]", "--baseline", str(base)]) == 0
    out = _caption(capsys)
    expected = paired_test([0.5, 0.5, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0, 0.0], "ttest")
    assert "paired ttest test over the 5 queries in both" in out and f"{expected:.4g}" in out


@pytest.mark.parametrize("exc, expected", [
    (IsADirectoryError(21, "Is a directory", "/x/out"), "/x/out is a directory, but a file is expected there"),
    (NotADirectoryError(20, "Not a directory", "/x/f/out"), "/x/f/out: a component of this path is a file"),
    (PermissionError(13, "Permission denied", "/ro/out"), "permission denied: /ro/out; choose a location"),
    (FileNotFoundError(2, "No such file", "/x/in"), "/x/in does not exist; check the path"),
    (UnicodeDecodeError("utf-8", b"ab\xff", 2, 3, "invalid start byte"),
     "an input is not UTF-8 text (invalid start byte: byte b'\\xff' at offset 2); re-save the file as UTF-8"),
    (json.JSONDecodeError("Expecting value", '{"a": ', 6), "invalid JSON (Expecting value at line 1, column 7)"),
])
def test_describe_error_is_one_line(exc, expected):
    from polyrank.shared.cli import describe_error

    text = describe_error(exc)
    assert text.startswith(expected) and "\n" not in text
    assert describe_error(ValueError("first\n  second\n")) == "first; second"


def test_os_errors_from_a_command_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    """Bug: only FileNotFoundError was mapped; IsADirectoryError/PermissionError/... gave tracebacks."""
    import polyrank.shared.cli as cli

    def failing_with(error: OSError):
        def failing(pattern: str = "*") -> None:
            """Fails."""
            raise error
        return failing

    for error in (IsADirectoryError(21, "Is a directory", str(tmp_path)), PermissionError(13, "denied", "/ro"),
                  NotADirectoryError(20, "Not a directory", "/f/x")):
        monkeypatch.setitem(cli.COMMANDS, "list", failing_with(error))
        assert main(["list"]) == 2
        assert error.filename in _error_line(capsys)


def test_unexpected_exceptions_keep_their_traceback_and_debug_reraises(monkeypatch, capsys):
    import polyrank.shared.cli as cli

    def buggy(pattern: str = "*") -> None:
        """A bug."""
        raise RuntimeError("a real bug")

    monkeypatch.setitem(cli.COMMANDS, "list", buggy)
    with pytest.raises(RuntimeError, match="a real bug"):
        main(["list"])
    monkeypatch.setitem(cli.COMMANDS, "list", lambda pattern="*": {}["missing key"])
    with pytest.raises(KeyError):  # a KeyError is a bug, not a user error
        main(["list"])
    monkeypatch.undo()
    args = ["reproduce", "/nonexistent/row.yaml"]
    assert main(args) == 2
    with pytest.raises(PolyrankError):
        main(["--debug", *args])
    monkeypatch.setenv("POLYRANK_DEBUG", "1")
    with pytest.raises(PolyrankError):
        main(args)
    monkeypatch.setenv("POLYRANK_DEBUG", "0")
    assert main(args) == 2
