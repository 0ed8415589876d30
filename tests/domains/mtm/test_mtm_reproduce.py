"""The paper-row configs parse, and say exactly what is missing when the release is absent."""

from pathlib import Path

import pytest

from polyrank.shared.errors import MissingResourceError
from polyrank.shared.reproduce import reproduce

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "mtm"


@pytest.mark.parametrize("name", ["twitter.yaml", "weibo.yaml"])
def test_paper_rows_list_missing_release_and_backbone(name, tmp_path, monkeypatch):
    monkeypatch.setenv("POLYRANK_DATA_DIR", str(tmp_path))
    with pytest.raises(MissingResourceError, match=r"FN_\*\.json.*top50\.train\.line.*local BERT checkpoint"):
        reproduce(CONFIGS / name)
