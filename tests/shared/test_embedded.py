"""Embedded real data sets (issue 10): present, as shipped, and found by the demos without ../shared."""

from __future__ import annotations

import shutil

import pytest

from polyrank.shared import embedded
from polyrank.shared.cranfield import read_cranfield
from polyrank.shared.demo import DemoContext
from polyrank.shared.errors import FormatError, PolyrankError


@pytest.fixture
def no_shared_data(tmp_path, monkeypatch):
    """Hide ../shared/data: the data folder the demos see is an empty directory."""
    empty = tmp_path / "no_shared_data"
    empty.mkdir()
    monkeypatch.setenv("POLYRANK_DATA_DIR", str(empty))
    return empty


@pytest.mark.parametrize("name", sorted(embedded.SHARED_EQUIVALENT))
def test_each_embedded_set_matches_its_readme_count_and_checksum(name):
    embedded.verify(name)
    readme = (embedded.ROOT / name / "README.md").read_text()
    assert "Licence" in readme and "Source" in readme


def test_a_changed_file_fails_verification(tmp_path):
    shutil.copytree(embedded.ROOT / "casanovo_sample", tmp_path / "casanovo_sample")
    target = tmp_path / "casanovo_sample" / "data" / "preprocessed_mouse.fasta"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(PolyrankError, match="not as shipped"):
        embedded.verify("casanovo_sample", root=tmp_path)


def test_embedded_total_stays_small():
    total = sum(p.stat().st_size for name in embedded.SHARED_EQUIVALENT
                for p in (embedded.ROOT / name).rglob("*") if p.is_file())
    assert total < 10_000_000, f"embedded data sets take {total / 1e6:.1f} MB; keep them under about 10 MB"


def test_without_shared_data_every_set_resolves_to_the_embedded_copy(no_shared_data):
    from polyrank.shared.reproduce import data_dir

    for name in embedded.SHARED_EQUIVALENT:
        source = embedded.locate(name, data_dir())
        assert source.origin == "embedded" and source.path == embedded.ROOT / name / "data"


def test_with_shared_data_the_shared_copy_wins(shared_data):
    source = embedded.locate("cranfield", shared_data)
    assert source.origin == "shared" and source.path == shared_data / "text" / "cranfield"


def test_cranfield_counts_and_graded_gains():
    corpus, queries, qrels = read_cranfield(embedded.embedded_path("cranfield"))
    assert (len(corpus), len(queries), len(qrels)) == (1400, 225, 225)
    assert sum(len(v) for v in qrels.values()) == 1837
    assert sum(g > 0 for v in qrels.values() for g in v.values()) == 1612
    assert set(g for v in qrels.values() for g in v.values()) == {0, 1, 2, 3, 4}
    # cranqrel's first line is "1 184 2": query 1 (cran.qry ".I 001"), document 184, code 2 -> gain 3
    assert qrels["1"]["184"] == 3
    assert queries["3"].startswith("what problems of heat conduction in composite slabs")


def test_cranfield_bad_record_names_file_and_line(tmp_path):
    for name in ("cran.all.1400", "cran.qry"):
        shutil.copy(embedded.embedded_path("cranfield") / name, tmp_path / name)
    (tmp_path / "cranqrel").write_text("1 184 2\n1 29 x\n")
    with pytest.raises(FormatError, match=r"cranqrel:2"):
        read_cranfield(tmp_path)


def test_text_demo_loads_embedded_cranfield_without_shared_data(no_shared_data, tmp_path):
    from polyrank.shared.demo_text import _load

    docs, queries, qrels, source = _load(DemoContext(tmp_path, None), max_docs=1500)
    assert len(docs) == 1400 and len(queries) == 225 and "embedded" in source
