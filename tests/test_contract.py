"""The domain contract (CONTRIBUTING.md), checked on every registered ``*.tiny`` reranker.

Each domain's tiny variant must: warn that it is untrained when built without ``checkpoint=``; rank a fixed
input with finite scores; save and reload to identical scores; reject an unknown override with the list of
valid ones before building anything; and leave global RNG and thread state as it found them. A new domain
adds its fixed input to ``EXAMPLES`` (the test fails until it does).
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.registry import UntrainedWeightsWarning, list_rerankers, load, options


def _superglobal_example(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (64 + 8 * i, 72, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths[0], [(f"d{i}", p) for i, p in enumerate(paths[1:])]


def _mtm_example(tmp_path):
    articles = {"a1": ["The moon landing was staged.", "Experts disagree."],
                "a2": ["Vaccines do not cause autism.", "Many studies show it."],
                "a3": ["Water boils at 100 degrees at sea level."]}
    return "the moon landing was faked", list(articles.items())


def _ranknovo_example(tmp_path):
    from polyrank.domains.ranknovo.spectra import Spectrum

    rng = np.random.default_rng(0)
    mz = np.sort(rng.uniform(100, 1200, 40))
    spectrum = Spectrum(mz=mz, intensity=rng.uniform(0.1, 1.0, 40), precursor_mz=523.77, charge=2)
    return spectrum, [("c0", "PEPTIDEK"), ("c1", "PEPTLDEK"), ("c2", "PEPTIDKE"), ("c3", "AEPTIDEK")]


def _text_example(tmp_path):
    return "what is the boiling point of water", [("p1", "Water boils at 100 degrees Celsius at sea level."),
                                                  ("p2", "The moon orbits the earth."),
                                                  ("p3", "At altitude water boils at a lower temperature.")]


def _docimage_example(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pages = []
    for i in range(3):
        path = tmp_path / f"page{i}.png"
        Image.fromarray(rng.integers(0, 255, (64 + 8 * i, 48, 3), dtype=np.uint8)).save(path)
        pages.append((f"report.pdf#{i}", {"image": str(path), "text": f"page {i}: revenue grew {10 + i}%"}))
    return "how much did revenue grow", pages


EXAMPLES = {"superglobal": _superglobal_example, "mtm": _mtm_example, "ranknovo": _ranknovo_example,
            "text": _text_example, "crosslingual": _text_example, "docimage": _docimage_example}
TINY = list_rerankers("*.tiny")


def _global_state():
    return (torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate(),
            torch.get_num_threads())


def _same_state(a, b) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] and a[3] == b[3]


def _example(name, tmp_path):
    domain = name.split(".")[0]
    if domain not in EXAMPLES:
        pytest.fail(f"domain {domain!r} has a tiny reranker but no fixed input in tests/test_contract.py EXAMPLES")
    return EXAMPLES[domain](tmp_path)


def test_every_landed_domain_has_a_tiny_reranker():
    assert {n.split(".")[0] for n in TINY} >= {"superglobal", "mtm", "ranknovo"}


@pytest.mark.parametrize("name", TINY)
def test_untrained_warning_rank_save_reload_identical(name, tmp_path):
    query, candidates = _example(name, tmp_path)
    before = _global_state()
    with pytest.warns(UntrainedWeightsWarning, match="checkpoint="):
        reranker = load(name)
    assert _same_state(before, _global_state()), f"load({name!r}) changed global RNG or thread state"
    ranked = reranker.rank(query, candidates)
    scores = {r.candidate_id: r.score for r in ranked}
    assert sorted(scores) == sorted(c for c, _ in candidates)
    assert all(np.isfinite(list(scores.values())))
    assert [r.rank for r in ranked] == list(range(1, len(candidates) + 1))

    saved = reranker.save(tmp_path / "saved")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)  # a saved reranker is not "untrained"
        reloaded = load(saved)
    again = {r.candidate_id: r.score for r in reloaded.rank(query, candidates)}
    assert again == scores, f"{name}: scores changed after save -> load"


@pytest.mark.parametrize("name", TINY)
def test_unknown_override_is_a_clear_error_listing_valid_ones(name):
    valid = options(name)
    assert valid is not None, f"{name} must declare its overrides: register_reranker(..., options=[...])"
    with pytest.raises(PolyrankError, match="does not accept") as info:
        load(name, definitely_not_an_option=3)
    assert "Valid overrides" in str(info.value) and "checkpoint" in str(info.value)


@pytest.mark.parametrize("name", TINY)
def test_missing_checkpoint_is_a_clear_error(name, tmp_path):
    with pytest.raises(PolyrankError, match="does not exist"):
        load(name, checkpoint=tmp_path / "nope" / "last.ckpt")


def test_domain_imports_stay_light():
    import subprocess
    import sys

    code = ("import sys, polyrank.shared, polyrank.shared.registry as r; r.list_rerankers(); "
            "import polyrank.domains.superglobal, polyrank.domains.mtm, polyrank.domains.ranknovo, "
            "polyrank.domains.text, polyrank.domains.docimage, polyrank.domains.crosslingual, polyrank.shared.llm; "
            "heavy = [m for m in ('torch', 'transformers', 'timm', 'lightning', 'faiss', 'pyteomics') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"importing the core and the domains loaded heavy modules: {done.stdout}{done.stderr}"
