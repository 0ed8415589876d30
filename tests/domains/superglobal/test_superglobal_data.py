"""Readers: restricted unpickler, revisitop gnd, images (bad inputs), GLDv2 CSV, dataset validation."""

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from polyrank.domains.superglobal.data import (
    Preprocess, crop_bbx, landmark_folder_gnd, load_image, read_gnd, read_label_csv, safe_load_pickle)
from polyrank.domains.superglobal.datasets import prepare, validate
from polyrank.shared.errors import FormatError, PolyrankError


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _gnd(n_db=4, n_q=2):
    return {"imlist": [f"db{i}" for i in range(n_db)], "qimlist": [f"q{i}" for i in range(n_q)],
            "gnd": [{"bbx": [1, 2, 30, 40], "easy": [0], "hard": np.array([1]), "junk": [2]} for _ in range(n_q)]}


def test_restricted_unpickler_refuses_a_malicious_pickle(tmp_path):
    path = tmp_path / "gnd_evil.pkl"
    path.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [_Evil()]}))
    with pytest.raises(FormatError, match="refusing to load global .*system"):
        safe_load_pickle(path)


def test_read_gnd_accepts_lists_and_numpy_arrays(tmp_path):
    path = tmp_path / "gnd_x.pkl"
    path.write_bytes(pickle.dumps(_gnd()))
    gnd = read_gnd(path)
    assert gnd.n_db == 4 and gnd.qimlist == ["q0", "q1"]
    assert gnd.gnd[0]["hard"].tolist() == [1] and gnd.gnd[1]["bbx"] == [1.0, 2.0, 30.0, 40.0]


def test_read_gnd_reports_the_bad_query(tmp_path):
    raw = _gnd()
    raw["gnd"][1]["junk"] = [99]
    path = tmp_path / "gnd_bad.pkl"
    path.write_bytes(pickle.dumps(raw))
    with pytest.raises(FormatError, match=r"gnd_bad.pkl:2: junk index out of range"):
        read_gnd(path)


def test_unreadable_grayscale_and_rgba_images(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(PolyrankError, match="broken.jpg: cannot be read as an image"):
        load_image(tmp_path / "broken.jpg")
    Image.new("L", (80, 80)).save(tmp_path / "gray.png")
    Image.new("RGBA", (80, 80)).save(tmp_path / "rgba.png")
    with pytest.raises(PolyrankError, match="gray.png: image mode is L .*convert_mode=True"):
        load_image(tmp_path / "gray.png")
    with pytest.raises(PolyrankError, match="mode is RGBA"):
        load_image(tmp_path / "rgba.png")
    assert load_image(tmp_path / "rgba.png", convert_mode=True).mode == "RGB"


def test_tiny_image_and_preprocessing(tmp_path):
    image = Image.new("RGB", (20, 30), (255, 0, 0))
    with pytest.raises(PolyrankError, match="20x30 px, smaller than the minimum side 64"):
        Preprocess()(image, "tiny.jpg")
    tensor = Preprocess(mean=(0.5,) * 3, std=(0.5,) * 3, min_side=8)(image)
    assert tensor.shape == (3, 30, 20) and tensor[0].eq(1).all() and tensor[1].eq(-1).all()
    bgr = Preprocess(mean=(0.5,) * 3, std=(0.5,) * 3, min_side=8, bgr=True)(image)
    assert bgr[2].eq(1).all()  # red lands in the last channel in BGR order
    assert crop_bbx(Image.new("RGB", (100, 80)), [10, 5, 60, 200]).size == (50, 75)


def test_landmark_folder_gnd(tmp_path):
    for landmark, n in (("a", 3), ("b", 2)):
        (tmp_path / landmark).mkdir()
        for i in range(n):
            Image.new("RGB", (8, 8)).save(tmp_path / landmark / f"{i}.jpg")
    paths, labels, gnd = landmark_folder_gnd(tmp_path)
    assert labels == ["a", "a", "a", "b", "b"]
    assert gnd.gnd[0]["easy"].tolist() == [1, 2] and gnd.gnd[0]["junk"].tolist() == [0]
    assert gnd.gnd[4]["easy"].tolist() == [3]


def test_label_csv_reports_file_and_line(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "abc.jpg")
    good = tmp_path / "train.csv"
    good.write_text("id,landmark_id\nabc,7\n")
    paths, labels, classes = read_label_csv(good, tmp_path)
    assert labels == [0] and classes == ["7"]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,landmark_id\nabc,7\nmissing,3\n")
    with pytest.raises(FormatError, match=r"bad.csv:3: image for 'missing' not found"):
        read_label_csv(bad, tmp_path)


def test_prepare_validates_a_hand_placed_copy(tmp_path):
    folder = tmp_path / "roxford5k"
    (folder / "jpg").mkdir(parents=True)
    (folder / "gnd_roxford5k.pkl").write_bytes(pickle.dumps(_gnd()))
    for name in ["db0", "db1", "db2", "q0", "q1"]:
        Image.new("RGB", (8, 8)).save(folder / "jpg" / f"{name}.jpg")
    report = validate("roxford5k", tmp_path, expected=(4, 2))
    assert report.missing == ["db3"] and not report.ok
    with pytest.raises(PolyrankError, match="expected 4993 and 70"):
        prepare("roxford5k", str(tmp_path), download_if_possible=False)
