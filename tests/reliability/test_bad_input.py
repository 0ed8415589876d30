"""Bad input to every reader: a clear FormatError with file and line (issues 9.6-9.10), never a silent result.

Each test names the defect it guards; every case here was accepted silently (or failed with a bare Python
error naming no file) before the fix. Good inputs still round-trip at the end of the file.
"""

from __future__ import annotations

import base64
import warnings

import numpy as np
import pytest

from polyrank.shared.errors import FormatError, PolyrankError
from polyrank.shared.runs import (DuplicateRecordWarning, load_beir, read_beir_corpus, read_beir_qrels,
                                  read_beir_queries, read_candidates, read_jsonl, read_qrels, read_run,
                                  write_candidates, write_jsonl, write_qrels, write_run)

READERS = {"run": read_run, "qrels": read_qrels, "beir_qrels": read_beir_qrels, "corpus": read_beir_corpus,
           "queries": read_beir_queries, "candidates": read_candidates, "jsonl": lambda p: list(read_jsonl(p))}
GOOD_LINE = {"run": "q1 Q0 d1 1 0.5 t", "qrels": "q1 0 d1 1", "beir_qrels": "q1\td1\t1",
             "corpus": '{"_id": "d1", "text": "x"}', "queries": '{"_id": "q1", "text": "x"}',
             "candidates": '{"qid": "q1", "candidates": [{"id": "d1", "score": 1}]}', "jsonl": '{"a": 1}'}


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# ---------------------------------------------------------------------------------------------- 9.6: nan/inf


@pytest.mark.parametrize("score", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400"])
def test_run_rejects_non_finite_scores(tmp_path, score):
    """9.6: nan/inf scores were accepted and ranked last (or first) silently."""
    path = _write(tmp_path, "r.trec", f"q1 Q0 a 1 2.0 t\nq1 Q0 b 2 {score} t\n")
    with pytest.raises(FormatError, match=rf"r\.trec:2: score '{score}' is not a finite number"):
        read_run(path)


# ------------------------------------------------------------------ 9.7: corpus ids, BEIR header, whitespace ids


def test_beir_corpus_duplicate_id_names_both_lines(tmp_path):
    """9.7: a duplicate _id kept the last document silently."""
    path = _write(tmp_path, "corpus.jsonl", '{"_id": "d1", "text": "first"}\n{"_id": "d2", "text": "x"}\n'
                                            '{"_id": "d1", "text": "second"}\n')
    with pytest.raises(FormatError, match=r"corpus\.jsonl:3: _id 'd1' appears twice \(lines 1 and 3\)"):
        read_beir_corpus(path)


@pytest.mark.parametrize("first_row", ["q1\td1\tl", "q1\td1\t1.5", "q1\td1\thigh", "q1\td1\t-"])
def test_beir_qrels_bad_first_grade_is_not_a_header(tmp_path, first_row):
    """9.7: any first row with a non-integer grade was skipped as a header, losing a judgment silently."""
    path = _write(tmp_path, "test.tsv", f"{first_row}\nq1\td2\t1\n")
    with pytest.raises(FormatError, match=r"test\.tsv:1: score .* is not an integer"):
        read_beir_qrels(path)


def test_beir_qrels_bad_grade_after_the_header_names_its_line(tmp_path):
    path = _write(tmp_path, "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\tyes\n")
    with pytest.raises(FormatError, match=r"test\.tsv:3: score 'yes' is not an integer"):
        read_beir_qrels(path)


@pytest.mark.parametrize("run, tag, message", [
    ({"q1": {"d 1": 1.0}}, "t", r"document id 'd 1' of query 'q1' contains whitespace"),
    ({"q1": {"d\t1": 1.0}}, "t", r"document id 'd\\t1' of query 'q1' contains whitespace"),
    ({"q1": {"d\u00a01": 1.0}}, "t", r"document id 'd\\xa01' of query 'q1' contains whitespace"),  # no-break space
    ({"q1": {"": 1.0}}, "t", r"document id '' of query 'q1' is empty"),
    ({"q 1": {"d1": 1.0}}, "t", r"query id 'q 1' contains whitespace"),
    ({"#q": {"d1": 1.0}}, "t", r"query id '#q' starts with '#'"),
    ({"q1": {"d1": 1.0}}, "my tag", r"run tag 'my tag' contains whitespace"),
    ({"q1": {"d1": float("nan")}}, "t", r"score nan of document 'd1' for query 'q1' is not finite"),
    ({"q1": {"d1": "high"}}, "t", r"score 'high' of document 'd1' for query 'q1' is not a number"),
])
def test_write_run_refuses_what_read_run_cannot_read(tmp_path, run, tag, message):
    """9.7: an id with whitespace was written into a run that read_run could not read back."""
    path = tmp_path / "r.trec"
    with pytest.raises(PolyrankError, match=message):
        write_run(run, path, tag=tag)
    assert not path.exists()  # nothing half-written


@pytest.mark.parametrize("qrels, message", [
    ({"q1": {"d 1": 1}}, r"document id 'd 1' of query 'q1' contains whitespace"),
    ({"q 1": {"d1": 1}}, r"query id 'q 1' contains whitespace"),
    ({"q1": {"d1": 0.5}}, r"relevance 0.5 of document 'd1' for query 'q1' is not an integer"),
    ({"q1": {"d1": "1"}}, r"relevance '1' of document 'd1' for query 'q1' is not an integer"),
])
def test_write_qrels_refuses_what_read_qrels_cannot_read(tmp_path, qrels, message):
    path = tmp_path / "q.txt"
    with pytest.raises(PolyrankError, match=message):
        write_qrels(qrels, path)
    assert not path.exists()


# ---------------------------------------------------------------------------------------- 9.8: duplicates


@pytest.mark.parametrize("reader, content, message", [
    (read_qrels, "q1 0 d1 1\nq1 0 d2 0\nq1 0 d1 2\n", r"q\.txt:3: judgment of document 'd1' appears twice for "
                                                      r"query 'q1' \(lines 1 and 3\) with different values 1 and 2"),
    (read_qrels, "q1 d1 1\n\nq1 d1 0\n", r"q\.txt:3: judgment .*'d1'.* \(lines 1 and 3\)"),
    (read_beir_qrels, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\n", r"q\.txt:3: .*\(lines 2 and 3\)"),
    (read_run, "q1 Q0 d1 1 0.9 t\nq2 Q0 d1 1 0.1 t\nq1 Q0 d1 2 0.3 t\n",
     r"q\.txt:3: document 'd1' appears twice for query 'q1' \(lines 1 and 3\) with different values 0.9 and 0.3"),
    (read_candidates, '{"qid": "q1", "candidates": [{"id": "a", "score": 1}, {"id": "a", "score": 2}]}\n',
     r"q\.txt:1: candidate 'a' appears twice for query 'q1' \(lines 1 and 1\)"),
    (read_candidates, '{"qid": "q1", "candidates": [{"id": "a", "score": 1}]}\n'
                      '{"qid": "q1", "candidates": [{"id": "a", "score": 2}]}\n', r"q\.txt:2: .*\(lines 1 and 2\)"),
    (read_beir_queries, '{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n', r"q\.txt:2: .*\(lines 1 and 2\)"),
])
def test_differing_duplicates_name_both_lines(tmp_path, reader, content, message):
    """9.8: a repeated (query, document) kept the last value silently."""
    with pytest.raises(FormatError, match=message):
        reader(_write(tmp_path, "q.txt", content))


@pytest.mark.parametrize("reader, content, expected", [
    (read_qrels, "q1 0 d1 1\nq1 0 d1 1\n", {"q1": {"d1": 1}}),
    (read_run, "q1 Q0 d1 1 0.5 a\nq1 Q0 d1 1 0.5 b\n", {"q1": {"d1": 0.5}}),
    (read_beir_corpus, '{"_id": "d", "text": "t"}\n{"_id": "d", "text": "t"}\n', {"d": {"title": "", "text": "t"}}),
])
def test_identical_duplicates_are_kept_once_with_a_warning(tmp_path, reader, content, expected):
    expected_warning = r"1 identical duplicate record\(s\) ignored \(first: line 2 repeats line 1"
    with pytest.warns(DuplicateRecordWarning, match=expected_warning):
        assert reader(_write(tmp_path, "q.txt", content)) == expected


# ---------------------------------------------------------------------------------------------- 9.9: spectra

MGF = "BEGIN IONS\nTITLE={title}\nPEPMASS=500.5\nCHARGE={charge}\n100.1 5\n200.2 7\nEND IONS\n"


def _mzml(charge: str = "2", spectra: int = 1) -> str:
    def array(values, name):
        data = base64.b64encode(np.asarray(values, "<f8").tobytes()).decode()
        return (f'<binaryDataArray><cvParam name="64-bit float"/><cvParam name="no compression"/>'
                f'<cvParam name="{name}"/><binary>{data}</binary></binaryDataArray>')

    one = ('<spectrum id="scan={i}"><cvParam name="ms level" value="2"/><precursorList><precursor><selectedIonList>'
           '<selectedIon><cvParam name="selected ion m/z" value="500.5"/>'
           f'<cvParam name="charge state" value="{charge}"/></selectedIon></selectedIonList></precursor>'
           f'</precursorList><binaryDataArrayList>{array([100.0, 200.0], "m/z array")}'
           f'{array([5.0, 7.0], "intensity array")}</binaryDataArrayList></spectrum>\n')
    body = "".join(one.replace("{i}", str(i)) for i in range(spectra))
    return f'<?xml version="1.0"?>\n<mzML xmlns="http://psi.hupo.org/ms/mzml"><run><spectrumList>\n{body}' \
           '</spectrumList></run></mzML>\n'


@pytest.mark.parametrize("name, content, message", [
    ("rand.mgf", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
     r"rand\.mgf:\d+: not a text file: byte 0x[0-9a-f]{2} at byte offset \d+ is not UTF-8 text"),
    ("nul.mgf", b"BEGIN IONS\x00\x00", r"nul\.mgf:1: not a text file: byte 0x00 at byte offset 10"),
    ("empty.mgf", b"", r"empty\.mgf: no spectrum found: no 'BEGIN IONS' line; expected MGF records"),
    ("text.mgf", b"PEPMASS=500\n100 5\n", r"text\.mgf: no spectrum found.*'BEGIN IONS'.*'END IONS'"),
    ("zero.mgf", MGF.format(title="z", charge="0"), r"zero\.mgf:1: no usable MS2 spectrum among 1 MGF records"),
    ("allbad.mgf", MGF.format(title="a", charge="2+").replace("PEPMASS=500.5\n", "") * 2,
     r"allbad\.mgf:1: no usable MS2 spectrum among 2 MGF records; first problem: .*no PEPMASS"),
    ("trunc.mzML", _mzml(spectra=2)[:-200], r"trunc\.mzML:\d+: not a well-formed mzML file .*after 1 complete "
                                              r"spectra.*truncated"),
    ("empty.mzML", b"", r"empty\.mzML: not a well-formed mzML file after 0 complete spectra"),
    ("rand.mzML", bytes(range(256)) * 4, r"rand\.mzML:1: not a well-formed mzML file"),
    ("none.mzML", '<?xml version="1.0"?><mzML><run/></mzML>', r"none\.mzML: no <spectrum> element found"),
    ("zero.mzML", _mzml(charge="0"), r"zero\.mzML:1: no usable MS2 spectrum among 1 <spectrum> elements; "
                                      r"first problem: .*charge 0 is not a positive charge"),
    ("rand.mzXML", bytes(range(256)) * 4, r"rand\.mzXML:1: not a well-formed mzXML file"),
])
def test_unreadable_spectrum_files_raise_a_located_format_error(tmp_path, name, content, message):
    """9.9: random bytes gave 0 spectra silently; a truncated mzML gave a raw lxml error."""
    from polyrank.domains.ranknovo.spectra import read_spectra

    with warnings.catch_warnings(), pytest.raises(FormatError, match=message):
        warnings.simplefilter("ignore")
        read_spectra(_write(tmp_path, name, content))


@pytest.mark.parametrize("charge", ["0", "2-", "-1", "0+"])
def test_non_positive_mgf_charge_is_rejected_with_title_and_line(tmp_path, charge):
    """9.9: CHARGE=0 or a negative charge was accepted (neutral mass 0 or negative)."""
    from polyrank.domains.ranknovo.spectra import read_mgf

    path = _write(tmp_path, "c.mgf", MGF.format(title="ok", charge="2+") + MGF.format(title="bad", charge=charge))
    read = read_mgf(path)
    assert [s.title for s in read.spectra] == ["ok"] and len(read.errors) == 1
    assert read.errors[0].line == 8
    assert f"record 2 (TITLE=bad; BEGIN IONS at this line) skipped: CHARGE={charge} (line 11)" in str(read.errors[0])
    with pytest.raises(FormatError, match=r"c\.mgf:8: .*not a positive charge"):
        read_mgf(path, strict=True)


def test_non_positive_mzml_charge_is_rejected_with_spectrum_id(tmp_path):
    from polyrank.domains.ranknovo.spectra import read_spectra

    path = _write(tmp_path, "c.mzML", _mzml(charge="-2"))
    with pytest.raises(FormatError, match=r"c\.mzML:1: spectrum 1 \(id='scan=0'\) skipped: .*charge -2"):
        read_spectra(path, strict=True)
    good = read_spectra(_write(tmp_path, "g.mzML", _mzml(spectra=2)))
    assert len(good.spectra) == 2 and good.spectra[1].charge == 2 and good.spectra[1].mz.tolist() == [100.0, 200.0]


# ------------------------------------------------------------------------- 9.10: encodings, bad fields, empties


@pytest.mark.parametrize("kind", sorted(READERS))
def test_non_utf8_files_name_file_line_and_byte_offset(tmp_path, kind):
    """9.10: a latin-1 byte gave a bare UnicodeDecodeError naming no file."""
    first = GOOD_LINE[kind]
    content = (first + "\n").encode() + GOOD_LINE[kind].replace("1", "\xe9").encode("latin-1") + b"\n"
    offset = len(first) + 1 + GOOD_LINE[kind].replace("1", "\xe9").index("\xe9")
    with pytest.raises(FormatError, match=rf"f\.txt:2: not UTF-8 text: byte 0xe9 at byte offset {offset};"):
        READERS[kind](_write(tmp_path, "f.txt", content))


@pytest.mark.parametrize("kind", sorted(READERS))
def test_utf16_files_are_refused(tmp_path, kind):
    content = (GOOD_LINE[kind] + "\n").encode("utf-16")
    with pytest.raises(FormatError, match=r"f\.txt:1: (not UTF-8 text: byte 0xff at byte offset 0|NUL byte)"):
        READERS[kind](_write(tmp_path, "f.txt", content))


@pytest.mark.parametrize("kind", sorted(set(READERS) - {"jsonl"}))
@pytest.mark.parametrize("content", ["", "\n\n  \n", "# only a comment\n"])
def test_empty_files_are_refused(tmp_path, kind, content):
    """9.10: an empty run/qrels/corpus was read as {} and scored 0 (or crashed later) silently."""
    with pytest.raises(FormatError, match=r"e\.txt: no record found .*expected"):
        READERS[kind](_write(tmp_path, "e.txt", content))


def test_a_beir_qrels_file_with_only_a_header_is_refused(tmp_path):
    with pytest.raises(FormatError, match=r"e\.tsv: no record found"):
        read_beir_qrels(_write(tmp_path, "e.tsv", "query-id\tcorpus-id\tscore\n"))


@pytest.mark.parametrize("candidate, message", [
    ('{"id": "a", "score": "high"}', r"candidate 0 has score 'high'; expected a JSON number"),
    ('{"id": "a", "score": "0.5"}', r"candidate 0 has score '0.5'; expected a JSON number"),
    ('{"id": "a", "score": null}', r"candidate 0 has score None; expected a JSON number"),
    ('{"id": "a", "score": true}', r"candidate 0 has score True; expected a JSON number"),
    ('{"id": "a", "score": NaN}', r"candidate 0 has score nan; expected a finite number"),
    ('{"id": "a", "score": -Infinity}', r"candidate 0 has score -inf; expected a finite number"),
    ('{"id": null, "score": 1}', r"'id' must be a non-empty string or integer, got None"),
    ('{"id": ["a"], "score": 1}', r"'id' must be a non-empty string or integer"),
    ('{"score": 1}', r"candidate 0 has no 'id'"),
])
def test_candidate_fields_of_the_wrong_type(tmp_path, candidate, message):
    """9.10: "score": "high" gave a bare ValueError naming no file."""
    path = _write(tmp_path, "c.jsonl", '{"qid": "q0", "candidates": []}\n'
                                       f'{{"qid": "q1", "candidates": [{candidate}]}}\n')
    with pytest.raises(FormatError, match=rf"c\.jsonl:2: {message}"):
        read_candidates(path)


@pytest.mark.parametrize("reader, content, message", [
    (read_run, "q1 Q0 a 1 0.5\n", r"f\.txt:1: expected 6 columns .* got 5"),
    (read_run, "q1 Q0 a 1 0.5 t extra\n", r"f\.txt:1: expected 6 columns .* got 7"),
    (read_qrels, "q1 a\n", r"f\.txt:1: expected 'qid 0 docid relevance', got 2 columns"),
    (read_qrels, "q1 0 a 1 1\n", r"f\.txt:1: expected 'qid 0 docid relevance', got 5 columns"),
    (read_qrels, "q1 0 a 1.0\n", r"f\.txt:1: relevance '1.0' is not an integer"),
    (read_beir_qrels, "q1\td1\n", r"f\.txt:1: expected 3 columns 'query-id corpus-id score', got 2"),
    (read_beir_qrels, "q1\td1\t1\t0\n", r"f\.txt:1: expected 3 columns .* got 4"),
    (read_beir_corpus, '{"_id": "d1"}\n', r"f\.txt:1: missing key 'text'"),
    (read_beir_corpus, '{"_id": "d1", "text": null}\n', r"f\.txt:1: 'text' must be a string, got NoneType"),
    (read_beir_corpus, '{"_id": "d1", "title": 3, "text": "x"}\n', r"f\.txt:1: 'title' must be a string"),
    (read_beir_corpus, '{"_id": "", "text": "x"}\n', r"f\.txt:1: '_id' must be a non-empty string or integer"),
    (read_beir_queries, '{"_id": "q1", "text": ["a"]}\n', r"f\.txt:1: 'text' must be a string, got list"),
    (read_beir_queries, '{"text": "a"}\n', r"f\.txt:1: missing key '_id'"),
    (read_candidates, '{"qid": "q", "candidates": {"id": "a"}}\n', r"f\.txt:1: 'candidates' must be a list"),
    (lambda p: list(read_jsonl(p)), '{"a": 1}\n[1, 2]\n', r"f\.txt:2: expected a JSON object, got list"),
    (lambda p: list(read_jsonl(p)), '{"a": 1}\n{"a": \n', r"f\.txt:2: invalid JSON"),
])
def test_wrong_columns_and_field_types_name_file_and_line(tmp_path, reader, content, message):
    with pytest.raises(FormatError, match=message):
        reader(_write(tmp_path, "f.txt", content))


def test_write_jsonl_refuses_non_json_values(tmp_path):
    with pytest.raises(PolyrankError, match="record 1 cannot be written as JSON"):
        write_jsonl([{"a": 1}, {"a": float("nan")}], tmp_path / "x.jsonl")
    with pytest.raises(PolyrankError, match="score inf of candidate 'a' for query 'q' is not finite"):
        write_candidates({"q": {"a": float("inf")}}, tmp_path / "c.jsonl")
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "c.jsonl").exists()


# ----------------------------------------------------------------------------- good input still round-trips


def test_blank_lines_comments_bom_and_crlf_are_fine_and_lines_stay_counted(tmp_path):
    content = "\ufeffq1 Q0 a 1 0.5 t\r\n\r\n# a comment\r\nq1 Q0 b 2 0.25 t\r\nq1 Q0 c 3 x t\r\n"
    with pytest.raises(FormatError, match=r"r\.trec:5: score 'x'"):
        read_run(_write(tmp_path, "r.trec", content))
    assert read_run(_write(tmp_path, "r.trec", content.rsplit("q1 Q0 c", 1)[0])) == {"q1": {"a": 0.5, "b": 0.25}}


@pytest.mark.parametrize("header", ["query-id\tcorpus-id\tscore", "qid\tdocid\trelevance", "Query_ID\tCorpus_ID\tScore",
                                    "query-id corpus-id score"])
def test_beir_qrels_header_spellings_are_skipped(tmp_path, header):
    assert read_beir_qrels(_write(tmp_path, "t.tsv", f"{header}\nq1\td1\t2\n")) == {"q1": {"d1": 2}}


def test_random_runs_qrels_and_candidates_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ids = ["d1", "D-1", "doc/ü", "é:3", "x#y", "1e5", "0"]
    run = {f"q{i}": {d: float(rng.choice([rng.standard_normal(), 0.5, -0.0, 1e-300, 1e300])) for d in ids}
           for i in range(20)}
    qrels = {f"q{i}": {d: int(rng.integers(-1, 4)) for d in ids[: 1 + i % 7]} for i in range(20)}
    qrels["q3"]["np"] = np.int64(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good file raises no warning
        assert read_run(write_run(run, tmp_path / "r.trec")) == run
        assert read_qrels(write_qrels(qrels, tmp_path / "q.txt")) == qrels
        assert read_candidates(write_candidates(run, tmp_path / "c.jsonl")) == run


def test_load_beir_round_trip_with_unicode_and_missing_titles(tmp_path):
    write_jsonl([{"_id": "d1", "title": None, "text": "ä"}, {"_id": 2, "text": "b"}], tmp_path / "corpus.jsonl")
    write_jsonl([{"_id": "q1", "text": "¿qué?"}, {"_id": "q2", "text": "x"}], tmp_path / "queries.jsonl")
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("q1\td1\t1\nq1\t2\t0\nq9\td1\t1\n")
    with pytest.warns(UserWarning, match="1 of 2 judged queries"):  # q9 has no query text: dropped, said so
        corpus, queries, qrels = load_beir(tmp_path)
    assert corpus == {"d1": {"title": "", "text": "ä"}, "2": {"title": "", "text": "b"}}
    assert queries == {"q1": "¿qué?", "q2": "x"} and qrels == {"q1": {"d1": 1, "2": 0}}
