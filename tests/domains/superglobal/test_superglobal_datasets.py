"""prepare(): sha256 verification with sidecars, offline instructions, https sources (no network used)."""

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from polyrank.domains.superglobal import datasets
from polyrank.domains.superglobal.datasets import ChecksumError, verify_sha256


def test_recorded_digest_is_checked(tmp_path):
    path = tmp_path / "gnd_roxford5k.pkl"
    path.write_bytes(b"ground truth")
    digest = hashlib.sha256(b"ground truth").hexdigest()
    assert verify_sha256(path, digest) == digest
    with pytest.raises(ChecksumError, match="does not match"):
        verify_sha256(path, "0" * 64)


def test_unknown_digest_is_recorded_in_a_sidecar_then_verified(tmp_path, capsys):
    """Guards: files accepted with no checksum at all (issue 9 item 11)."""
    path = tmp_path / "paris_1-v1.tgz"
    path.write_bytes(b"archive v1")
    digest = verify_sha256(path, None)
    sidecar = tmp_path / "paris_1-v1.tgz.sha256"
    assert sidecar.read_text().split()[0] == digest and digest in capsys.readouterr().out
    assert verify_sha256(path, None) == digest  # second run: verified against the sidecar
    path.write_bytes(b"archive v1, truncated or tampered")
    with pytest.raises(ChecksumError, match="paris_1-v1.tgz.sha256"):
        verify_sha256(path, None)


def test_sources_use_https_and_every_file_has_a_digest_entry():
    urls = [datasets.GND_URL, datasets.R1M_LIST_URL] + [u for us in datasets.SOURCES.values() for u in us]
    assert all(u.startswith("https://") for u in urls)
    for name in datasets.SOURCES:
        assert all(target.name in datasets.SHA256 for _, target in datasets.files(name, "root"))


def _tgz(path, names):
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            buffer = io.BytesIO()
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="JPEG")
            info = tarfile.TarInfo(f"oxbuild/{name}.jpg")
            info.size = len(buffer.getvalue())
            tar.addfile(info, io.BytesIO(buffer.getvalue()))


def test_offline_prepare_prints_where_to_place_files_then_uses_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "_network", lambda timeout=3.0: False)
    with pytest.raises(Exception, match="gnd_roxford5k.pkl not found"):
        datasets.prepare("roxford5k", str(tmp_path))
    out = capsys.readouterr().out
    folder = tmp_path / "roxford5k"
    assert f"{folder / 'gnd_roxford5k.pkl'}    <- https://cmp.felk.cvut.cz/" in out
    assert f"{folder / 'archives' / 'oxbuild_images-v1.tgz'}    <- https://www.robots.ox.ac.uk/" in out
    # the user places both files: they are verified (sidecars written), the archive is extracted, validated
    (folder / "archives").mkdir(parents=True)
    gnd = {"imlist": ["a", "b"], "qimlist": ["q"], "gnd": [{"bbx": [0, 0, 4, 4], "easy": [0], "hard": [], "junk": []}]}
    (folder / "gnd_roxford5k.pkl").write_bytes(pickle.dumps(gnd))
    _tgz(folder / "archives" / "oxbuild_images-v1.tgz", ["a", "b", "q"])
    monkeypatch.setitem(datasets.EXPECTED, "roxford5k", (2, 1))
    report = datasets.prepare("roxford5k", str(tmp_path))
    assert report.ok and (folder / "jpg" / "q.jpg").is_file()
    assert (folder / "archives" / "oxbuild_images-v1.tgz.sha256").is_file()
    assert (folder / "gnd_roxford5k.pkl.sha256").is_file()
    (folder / "gnd_roxford5k.pkl").write_bytes(pickle.dumps({**gnd, "qimlist": ["a"]}))
    with pytest.raises(ChecksumError, match="gnd_roxford5k.pkl"):
        datasets.prepare("roxford5k", str(tmp_path))


def test_a_download_is_verified_before_it_is_kept(tmp_path, monkeypatch):
    source = tmp_path / "served.txt"
    source.write_bytes(b"1M list")
    target = tmp_path / "r1m" / "revisitop1m.txt"
    monkeypatch.setitem(datasets.SHA256, "revisitop1m.txt", "f" * 64)
    with pytest.raises(ChecksumError):
        datasets._fetch(source.as_uri(), target)  # file:// stands in for the host
    assert not target.exists() and not target.with_suffix(".txt.part").exists()
    monkeypatch.setitem(datasets.SHA256, "revisitop1m.txt", hashlib.sha256(b"1M list").hexdigest())
    assert datasets._fetch(source.as_uri(), target).read_bytes() == b"1M list"
