"""The Reranker face: registry, score/score_batch, save/load round trip, end-to-end revisitop run."""

import pickle

import numpy as np
import pytest
from PIL import Image

from polyrank.domains.superglobal import revisitop
from polyrank.domains.superglobal.data import read_gnd
from polyrank.domains.superglobal.rerank import rerank_loop
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate
from polyrank.shared.registry import list_rerankers, load


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """15 generated photos of 3 'landmarks' (a coloured block at a landmark-specific place), 160x128."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for landmark in range(3):
        colour = rng.integers(0, 255, 3)
        for i in range(5):
            array = rng.integers(0, 80, (128, 160, 3)).astype(np.uint8)
            y, x = 10 + 30 * landmark + rng.integers(0, 6), 20 + 35 * landmark + rng.integers(0, 6)
            array[y:y + 50, x:x + 60] = colour
            path = root / f"l{landmark}_{i}.jpg"
            Image.fromarray(array).save(path)
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tiny():
    return load("superglobal.tiny")


def test_registry_lists_the_variants():
    assert {"superglobal.r50", "superglobal.r101", "superglobal.effnet_lite0", "superglobal.tiny"} <= set(
        list_rerankers("superglobal.*"))


def test_r50_without_checkpoint_says_what_is_needed():
    with pytest.raises(PolyrankError, match="needs checkpoint="):
        load("superglobal.r50")


def test_score_matches_rerank_of_descriptors(tiny, photos):
    cands = [Candidate(p.stem, str(p)) for p in photos[1:]]
    scores = tiny.score(str(photos[0]), cands)
    q = tiny.describe([str(photos[0])])
    db = tiny.describe([c.content for c in cands])
    first = np.argsort(-(q @ db.T), axis=1, kind="stable")
    new, sg = rerank_loop(q, db, first, m=400, k=10, beta=0.15)
    assert np.allclose(np.sort(scores)[::-1], sg[0], atol=1e-5)
    ranked = tiny.rank(str(photos[0]), cands)
    assert [r.candidate_id for r in ranked] == [cands[i].id for i in new[0]]


def test_precomputed_descriptors_and_score_batch(tiny, photos):
    db = tiny.describe([str(p) for p in photos])
    lists = [[Candidate(str(i), db[i]) for i in range(1, 15)], [Candidate(str(i), db[i]) for i in range(0, 14)]]
    batched = tiny.score_batch([db[0], str(photos[14])], lists)
    single = [tiny.score(db[0], lists[0]), tiny.score(str(photos[14]), lists[1])]
    for a, b in zip(batched, single):
        assert np.allclose(a, b, atol=1e-6)


def test_beyond_m_keeps_first_stage_order(photos):
    small = load("superglobal.tiny", m=3, k=2)
    cands = [Candidate(p.stem, str(p)) for p in photos[1:]]
    ranked = small.rank(str(photos[0]), cands)
    first = small.explain(str(photos[0]), cands)
    order = sorted(range(len(cands)), key=lambda i: (-first[i]["first_stage"], cands[i].id))
    assert [r.candidate_id for r in ranked[3:]] == [cands[i].id for i in order[3:]]


def test_descriptor_dimension_mismatch(tiny):
    with pytest.raises(PolyrankError, match="dimension 7 but this model produces D=64"):
        tiny.score(np.ones(64), [Candidate("a", np.ones(7))])


def test_save_load_round_trip(tiny, photos, tmp_path):
    cands = [Candidate(p.stem, str(p)) for p in photos[1:6]]
    before = tiny.score(str(photos[0]), cands)
    tiny.save(tmp_path / "saved")
    other = load(tmp_path / "saved")
    assert np.allclose(other.score(str(photos[0]), cands), before, atol=1e-6)
    assert other.extractor.model.stage1 == tiny.extractor.model.stage1


def test_save_load_keeps_non_default_rerank_settings(tmp_path):
    custom = load("superglobal.tiny", m=7, k=3, beta=0.3)
    custom.save(tmp_path / "saved")
    restored = load(tmp_path / "saved")
    assert (restored.m, restored.k, restored.beta) == (7, 3, 0.3)
    assert load(tmp_path / "saved", k=5).k == 5  # explicit overrides still win


def test_end_to_end_revisitop_with_streamed_distractors(tiny, photos, tmp_path):
    root = tmp_path / "data"
    (root / "toy" / "jpg").mkdir(parents=True)
    names = [p.stem for p in photos]
    for p in photos:
        (root / "toy" / "jpg" / p.name).write_bytes(p.read_bytes())
    queries = [0, 5, 10]
    gnd = [{"bbx": [0, 0, 150, 120], "easy": [j for j in range(15) if j // 5 == q // 5 and j != q],
            "hard": [], "junk": [q]} for q in queries]
    (root / "toy" / "gnd_toy.pkl").write_bytes(
        pickle.dumps({"imlist": names, "qimlist": [names[q] for q in queries], "gnd": gnd}))
    desc = revisitop.extract_dataset(tiny.extractor, root, "toy", cache=tmp_path / "cache")
    assert desc.queries.shape == (3, 64) and (tmp_path / "cache" / "toy_database.npy").is_file()
    plain = revisitop.evaluate(desc, rerank=False)
    reranked = revisitop.evaluate(desc, rerank=True, m=10, k=3)
    assert 0 < plain["medium"].map <= 100 and 0 < reranked["medium"].map <= 100
    # streaming far-away distractors through the store changes nothing for the database rows
    far = -np.tile(desc.queries.mean(0, keepdims=True), (40, 1))
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    streamed = revisitop.first_stage(desc.queries, desc.database, far.astype(np.float32), depth=55, chunk=7)
    exact = revisitop.first_stage(desc.queries, desc.database)
    assert np.array_equal(streamed[:, :15], exact) and (streamed[:, 15:] >= 15).all()
    with_1m = revisitop.evaluate(desc, rerank=True, m=10, k=3, distractors=far.astype(np.float32), depth=55)
    assert with_1m["medium"].map == pytest.approx(reranked["medium"].map)
    assert read_gnd(root / "toy" / "gnd_toy.pkl").gnd[0]["bbx"] == [0.0, 0.0, 150.0, 120.0]
