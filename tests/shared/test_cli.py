"""The `polyrank` command end to end: training via LightningCLI, index/search/evaluate, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polyrank.shared.cli import main
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
