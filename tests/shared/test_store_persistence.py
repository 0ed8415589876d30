"""CandidateStore persistence: identical round trips, mmap, fault-injected saves, corrupted, edited or mismatched
stores, old format versions, and refusing to replace what is not a store."""

from __future__ import annotations

import json
import os

import faiss
import numpy as np
import pytest

import polyrank.shared.atomic as atomic
from polyrank.shared.errors import FormatError, MissingResourceError, PolyrankError
from polyrank.shared.store import FORMAT_VERSION, CandidateStore, StoreError
from polyrank.shared.store.persistence import manifest_digest

DIM = 16


def build(factory: str, ids: list, seed: int = 0, metric: str = "ip") -> tuple[CandidateStore, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    store = CandidateStore(DIM, factory, metric, nprobe=4 if "IVF" in factory else None)
    store.train(x)
    store.add(ids, x, metadata=[{"n": i, "tag": "t"} if i % 3 else None for i in range(len(ids))])
    return store, x


def same_results(a: CandidateStore, b: CandidateStore, queries: np.ndarray, k: int = 10) -> bool:
    (sa, ia), (sb, ib) = a.search(queries, k), b.search(queries, k)
    return np.array_equal(sa, sb) and np.array_equal(ia, ib) and ia.dtype == ib.dtype


@pytest.fixture
def queries() -> np.ndarray:
    return np.random.default_rng(9).standard_normal((20, DIM)).astype(np.float32)


@pytest.mark.parametrize("factory,ids,metric", [
    ("Flat", [f"doc-{i}" for i in range(600)], "ip"),
    ("IVF8,Flat", list(range(0, 1200, 2)), "l2"),
    ("HNSW16", [f"h{i}" for i in range(600)], "cosine"),
    ("IVF8,PQ4", list(range(600)), "ip"),
])
@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_search_round_trip_is_identical(tmp_path, queries, factory, ids, metric, mmap):
    store, _ = build(factory, ids, metric=metric)
    store.remove(ids[5:9])  # holes in the label table must survive the trip
    store.save(tmp_path / "s")
    loaded = CandidateStore.load(tmp_path / "s", mmap=mmap)
    assert (loaded.dim, loaded.factory, loaded.metric, len(loaded)) == (DIM, factory, metric, len(ids) - 4)
    assert loaded.search_params == store.search_params and loaded.ids == store.ids
    assert same_results(store, loaded, queries)
    assert loaded.get_metadata(ids[:3]) == [None, {"n": 1, "tag": "t"}, {"n": 2, "tag": "t"}]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 2 and manifest["count"] == len(ids) - 4
    assert manifest["manifest_sha256"] == manifest_digest(manifest)
    assert set(manifest["files"]) == {"index.faiss", "labels.npy", "keys.json", "metadata.json"}
    if mmap:
        assert loaded.read_only
        with pytest.raises(StoreError, match="read-only"):
            loaded.add([ids[5]], np.ones((1, DIM), np.float32))
    else:  # a loaded store keeps working: new labels do not collide with old ones
        loaded.upsert([ids[5], ids[10]], np.ones((2, DIM), np.float32))
        assert len(loaded) == len(ids) - 3


def test_crash_while_writing_the_index_leaves_the_previous_copy(tmp_path, queries, monkeypatch):
    store, x = build("Flat", [f"d{i}" for i in range(300)])
    store.save(tmp_path / "s")
    before = CandidateStore.load(tmp_path / "s")
    store.upsert(["d0", "new"], x[:2] * 2)  # the in-memory store moves on

    def half_written(index, path):
        with open(path, "wb") as handle:
            handle.write(b"IxF2 partial")
        raise OSError("disk full (injected)")

    monkeypatch.setattr(faiss, "write_index", half_written)
    with pytest.raises(OSError, match="injected"):
        store.save(tmp_path / "s")
    monkeypatch.undo()
    after = CandidateStore.load(tmp_path / "s")
    assert len(after) == 300 and "new" not in after and same_results(before, after, queries)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"], "staging directory left behind"
    store.save(tmp_path / "s")  # and the next save goes through
    assert "new" in CandidateStore.load(tmp_path / "s")


def test_crash_between_the_two_renames_is_recovered_on_load(tmp_path, queries, monkeypatch):
    store, _ = build("Flat", list(range(200)))
    store.save(tmp_path / "s")
    reference = CandidateStore.load(tmp_path / "s")
    real_replace, calls = os.replace, []

    def replace_then_die(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # old copy already moved aside, new one not yet renamed in
            raise KeyboardInterrupt("killed (injected)")
        real_replace(src, dst)

    store.remove([0, 1])
    monkeypatch.setattr(atomic.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        store.save(tmp_path / "s")
    monkeypatch.undo()
    assert not (tmp_path / "s").exists() and (tmp_path / ".s.old").exists()
    recovered = CandidateStore.load(tmp_path / "s")
    assert len(recovered) == 200 and same_results(reference, recovered, queries)


def test_corrupted_or_missing_files_are_detected(tmp_path):
    store, _ = build("Flat", [f"d{i}" for i in range(100)])
    store.save(tmp_path / "s")
    index_file = tmp_path / "s" / "index.faiss"
    data = bytearray(index_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index_file.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"index.faiss: checksum mismatch.*corrupted"):
        CandidateStore.load(tmp_path / "s")
    index_file.write_bytes(bytes(data[:100]))  # truncated, and the check skipped: faiss itself fails
    with pytest.raises(FormatError, match="cannot read the saved store"):
        CandidateStore.load(tmp_path / "s", verify=False)
    (tmp_path / "s" / "keys.json").unlink()
    with pytest.raises(MissingResourceError, match="keys.json: missing"):
        CandidateStore.load(tmp_path / "s")
    (tmp_path / "s" / "manifest.json").unlink()
    with pytest.raises(MissingResourceError, match="not a saved CandidateStore"):
        CandidateStore.load(tmp_path / "s")
    with pytest.raises(MissingResourceError, match="no candidate store directory"):
        CandidateStore.load(tmp_path / "nothing")


def edit_manifest(path, rehash: bool = True, drop: tuple = (), **changes) -> None:
    """Edit manifest fields; ``rehash`` recomputes manifest_sha256 (a careful editor), so the field checks
    and cross-checks behind the checksum are exercised too."""
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    for key in drop:
        manifest.pop(key, None)
    if rehash and "manifest_sha256" in manifest:
        manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_mismatched_manifest_or_expectations_raise(tmp_path):
    store, _ = build("Flat", [f"d{i}" for i in range(100)])
    store.save(tmp_path / "s")
    with pytest.raises(StoreError, match="store has dim=16, expected 768"):
        CandidateStore.load(tmp_path / "s", dim=768)
    with pytest.raises(StoreError, match="store has metric='ip', expected 'l2'"):
        CandidateStore.load(tmp_path / "s", metric="l2")
    edit_manifest(tmp_path / "s", dim=32)
    with pytest.raises(FormatError, match="manifest.json: does not match the store's files: index dim 16 != "
                                          "manifest dim 32"):
        CandidateStore.load(tmp_path / "s")
    edit_manifest(tmp_path / "s", dim=16, count=99)
    with pytest.raises(FormatError, match="counts differ"):
        CandidateStore.load(tmp_path / "s")
    edit_manifest(tmp_path / "s", count=100, metric="l2")
    with pytest.raises(FormatError, match="index metric"):
        CandidateStore.load(tmp_path / "s")
    edit_manifest(tmp_path / "s", metric="ip", format_version=99)
    with pytest.raises(FormatError, match="format_version 99 is not supported"):
        CandidateStore.load(tmp_path / "s")
    (tmp_path / "s" / "manifest.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        CandidateStore.load(tmp_path / "s")


def test_empty_and_trained_but_empty_stores_round_trip(tmp_path, queries):
    CandidateStore(DIM).save(tmp_path / "empty")
    empty = CandidateStore.load(tmp_path / "empty")
    assert len(empty) == 0 and empty.ids == []
    empty.add(["a"], queries[:1])
    assert empty.search(queries[0], 1)[1].tolist() == [["a"]]
    trained = CandidateStore(DIM, "IVF8,Flat")
    trained.train(np.random.default_rng(3).standard_normal((400, DIM)).astype(np.float32))
    trained.save(tmp_path / "trained")
    loaded = CandidateStore.load(tmp_path / "trained")
    assert loaded.is_trained and loaded.search_params == {"nprobe": 32}
    loaded.add([5, 6], queries[:2])
    assert loaded.search(queries[1], 1)[1].tolist() == [[6]]


def as_version_1(path) -> None:
    """Rewrite a saved manifest as format version 1 wrote it (no manifest checksum)."""
    edit_manifest(path, rehash=False, drop=("manifest_sha256",), format_version=1)


# Issue 9 item 4: each edit below gave a raw IndexError/AttributeError (or loaded silently) before the
# manifest was checksummed and every field validated.
MANIFEST_EDITS = [
    ({"next_label": 0}, r"0 <= count <= next_label"),  # was: IndexError on the label table
    ({"next_label": 97}, r"labels must be unique, ascending and in \[0, next_label=97\)"),  # was: IndexError
    ({"search_params": []}, "search_params: expected dict"),  # was: AttributeError
    ({"search_params": {"nprobe": "x"}}, "search_params"),
    ({"search_params": {"nprobe": 4}}, "search_params.*IVF factories only"),  # was: StoreError without the file
    ({"files": []}, "files: expected dict"),  # was: AttributeError
    ({"files": {"index.faiss": {"sha256": "0" * 64, "bytes": 1}}}, "files: expected"),
    ({"count": "95"}, "count: expected int"),
    ({"count": 96}, "counts differ"),
    ({"dim": True}, "dim: expected int"),
    ({"dim": 0}, "expected dim >= 1"),
    ({"id_kind": "float"}, "id_kind: expected 'int' or 'str'"),
    ({"id_kind": None}, "id_kind"),
    ({"factory": "HNSW32"}, "not what manifest factory 'HNSW32' builds"),  # was: loaded, then wrong edits
    ({"factory": "IVF#"}, "factory: .*cannot build"),
    ({"format_version": "2"}, "format_version '2' is not supported"),
    ({"surprise": 1}, r"unknown \['surprise'\]"),
]


@pytest.mark.parametrize("change,message", MANIFEST_EDITS, ids=[next(iter(c)) + str(i) for i, (c, _) in
                                                                 enumerate(MANIFEST_EDITS)])
@pytest.mark.parametrize("version", [2, 1])
def test_every_manifest_edit_is_a_format_error_naming_the_manifest(tmp_path, change, message, version):
    store, _ = build("Flat", [f"d{i}" for i in range(100)])
    store.remove([f"d{i}" for i in range(50, 55)])  # 95 vectors, labels up to 99, next_label 100
    store.save(tmp_path / "s")
    if version == 1:
        as_version_1(tmp_path / "s")
    edit_manifest(tmp_path / "s", **change)  # rehashed: the field checks, not the checksum, must catch it
    for verify in (True, False):
        with pytest.raises(FormatError, match=message) as caught:
            CandidateStore.load(tmp_path / "s", verify=verify)
        assert "manifest.json" in str(caught.value)


@pytest.mark.parametrize("change", [{"search_params": {"nprobe": 8}}, {"metric": "cosine"},
                                    {"faiss_version": "0.0"}, {"next_label": 401}, {"count": 400}])
def test_an_edit_that_passes_every_field_check_still_fails_the_manifest_checksum(tmp_path, change):
    store, _ = build("IVF8,Flat", list(range(400)), metric="ip")
    store.save(tmp_path / "s")
    edit_manifest(tmp_path / "s", rehash=False, **change)
    if change == {"count": 400}:  # a no-op edit (same value, reformatted JSON) is no edit at all
        assert len(CandidateStore.load(tmp_path / "s")) == 400
        return
    with pytest.raises(FormatError, match=r"manifest.json: checksum mismatch.*edited or corrupted"):
        CandidateStore.load(tmp_path / "s", verify=False)
    edit_manifest(tmp_path / "s", rehash=False, drop=("manifest_sha256",))
    with pytest.raises(FormatError, match=r"manifest.json: fields missing \['manifest_sha256'\]"):
        CandidateStore.load(tmp_path / "s")


def test_stores_saved_by_format_version_1_still_load_and_resave_as_2(tmp_path, queries, caplog):
    store, _ = build("IVF8,Flat", list(range(0, 1200, 2)), metric="l2")
    store.remove([0, 2])
    store.save(tmp_path / "s")
    as_version_1(tmp_path / "s")
    with caplog.at_level("INFO", logger="polyrank.shared.store.persistence"):
        old = CandidateStore.load(tmp_path / "s")
    assert "has no manifest checksum" in caplog.text
    assert same_results(store, old, queries) and old.ids == store.ids
    old.save(tmp_path / "s")
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["format_version"] == 2


def test_labels_that_disagree_with_the_index_are_detected(tmp_path):
    store, _ = build("Flat", list(range(60)))
    store.remove(list(range(5, 15)))  # live labels 0-4 and 15-59
    store.save(tmp_path / "s")
    np.save(tmp_path / "s" / "labels.npy", np.arange(50, dtype=np.int64))  # in range, ascending, but wrong
    with pytest.raises(FormatError, match="the index holds other labels than labels.npy"):
        CandidateStore.load(tmp_path / "s", verify=False)


# Issue 9 item 1: save(path) deleted whatever was at path.
def test_save_refuses_to_replace_a_folder_of_other_files_or_a_regular_file(tmp_path, queries):
    store, _ = build("Flat", [f"d{i}" for i in range(50)])
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("three years of work")
    with pytest.raises(PolyrankError, match=r"thesis is a directory of 1 entries \(chapter1.tex\) without "
                                            r"manifest.json.*another path.*overwrite=True"):
        store.save(mine)
    assert (mine / "chapter1.tex").read_text() == "three years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"], "nothing staged or moved aside"
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    with pytest.raises(PolyrankError, match="notes.txt is a regular file.*overwrite=True"):
        store.save(notes)
    assert notes.read_text() == "keep me"
    reranker = tmp_path / "model"  # a saved reranker (polyrank.json) is not a store either
    reranker.mkdir()
    (reranker / "polyrank.json").write_text("{}")
    with pytest.raises(PolyrankError, match="without manifest.json"):
        store.save(reranker)
    for target in (mine, notes):  # the explicit flag replaces them
        store.save(target, overwrite=True)
        assert same_results(store, CandidateStore.load(target), queries)
    (tmp_path / "empty").mkdir()
    store.save(tmp_path / "empty")  # an empty folder and a previous store are replaced without the flag
    store.save(tmp_path / "empty")
    assert len(CandidateStore.load(tmp_path / "empty")) == 50
