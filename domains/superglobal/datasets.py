"""``prepare``: download (when a network exists) and validate ROxford5k, RParis6k and R1M.

    python -m polyrank.domains.superglobal.datasets prepare roxford5k --root /data/revisitop
    python -m polyrank.domains.superglobal.datasets prepare rparis6k --root /data/revisitop --download false

Sources are those of the official revisitop ``download.py`` (Radenovic et al., CVPR 2018); see
``datasets/<name>/README.md``. Validation reads the ground truth with the restricted unpickler, checks
the image and query counts, and that every listed image exists under ``jpg/``.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from polyrank.domains.superglobal.data import read_gnd
from polyrank.shared.errors import MissingResourceError, PolyrankError

logger = logging.getLogger(__name__)

GND_URL = "http://cmp.felk.cvut.cz/revisitop/data/datasets/{name}/gnd_{name}.pkl"
SOURCES = {
    "roxford5k": ["http://www.robots.ox.ac.uk/~vgg/data/oxbuildings/oxbuild_images-v1.tgz"],
    "rparis6k": ["http://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_1-v1.tgz",
                 "http://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_2-v1.tgz"],
    "revisitop1m": [f"http://ptak.felk.cvut.cz/revisitop/revisitop1m/jpg/revisitop1m.{i}.tar.gz"
                    for i in range(1, 101)],
}
R1M_LIST_URL = "http://ptak.felk.cvut.cz/revisitop/revisitop1m/revisitop1m.txt"
EXPECTED = {"roxford5k": (4993, 70), "rparis6k": (6322, 70), "revisitop1m": (1_001_001, 0)}


@dataclass
class Report:
    name: str
    n_images: int
    n_queries: int
    missing: list[str]

    @property
    def ok(self) -> bool:
        return not self.missing


def validate(name: str, root: str | Path, expected: tuple[int, int] | None = None) -> Report:
    """Check a (downloaded or hand-placed) copy; raise with what is wrong and how to fix it."""
    folder = Path(root) / name
    expected = expected or EXPECTED[name]
    if name == "revisitop1m":
        listing = folder / "revisitop1m.txt"
        if not listing.is_file():
            raise MissingResourceError(f"{listing} not found; download it from {R1M_LIST_URL}")
        names = listing.read_text().split()
        missing = [n for n in names if not (folder / "jpg" / n).is_file()]
        n_images, n_queries = len(names), 0
    else:
        gnd_path = folder / f"gnd_{name}.pkl"
        if not gnd_path.is_file():
            raise MissingResourceError(f"{gnd_path} not found; download it from {GND_URL.format(name=name)}")
        gnd = read_gnd(gnd_path)
        names = gnd.imlist + gnd.qimlist
        missing = [n for n in names if not (folder / "jpg" / f"{n}.jpg").is_file()]
        n_images, n_queries = len(gnd.imlist), len(gnd.qimlist)
    if (n_images, n_queries) != tuple(expected):
        raise PolyrankError(f"{folder}: {n_images} database images and {n_queries} queries, expected "
                            f"{expected[0]} and {expected[1]}; the ground-truth file is not the official one")
    if missing:
        logger.warning("%s: %d of %d images missing under %s/jpg, e.g. %s", name, len(missing), len(names),
                       folder, missing[:3])
    return Report(name, n_images, n_queries, missing)


def _network(timeout: float = 3.0) -> bool:
    try:
        urllib.request.urlopen("http://cmp.felk.cvut.cz/", timeout=timeout).close()
        return True
    except OSError:
        return False


def _fetch(url: str, target: Path) -> Path:
    if not target.is_file():
        logger.info("downloading %s", url)
        partial = target.with_suffix(target.suffix + ".part")
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as handle:
            shutil.copyfileobj(response, handle)
        partial.replace(target)
    return target


def _extract_flat(archive: Path, jpg: Path) -> None:
    """Extract every image of ``archive`` straight into ``jpg/`` (the revisitop layout is flat)."""
    jpg.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.lower().endswith(".jpg"):
                source = tar.extractfile(member)
                if source is not None:
                    (jpg / Path(member.name).name).write_bytes(source.read())


def download(name: str, root: str | Path) -> None:
    """Fetch the official archives and ground truth into ``root/name`` (resumable per file)."""
    folder = Path(root) / name
    (folder / "archives").mkdir(parents=True, exist_ok=True)
    if name == "revisitop1m":
        _fetch(R1M_LIST_URL, folder / "revisitop1m.txt")
    else:
        _fetch(GND_URL.format(name=name), folder / f"gnd_{name}.pkl")
    for url in SOURCES[name]:
        _extract_flat(_fetch(url, folder / "archives" / url.rsplit("/", 1)[-1]), folder / "jpg")


def prepare(name: str, root: str = "data/revisitop", download_if_possible: bool = True) -> Report:
    """Download when a network exists (and ``download_if_possible``), then validate.

    Args:
        name: roxford5k, rparis6k or revisitop1m.
        root: folder that holds (or will hold) ``<name>/``.
        download_if_possible: try the official sources first; false only validates a hand-placed copy.
    """
    if name not in SOURCES:
        raise PolyrankError(f"unknown dataset {name!r}; expected one of {sorted(SOURCES)}")
    if download_if_possible and _network():
        download(name, root)
    elif download_if_possible:
        logger.info("no network: validating the copy under %s", Path(root) / name)
    report = validate(name, root)
    logger.info("%s: %d images, %d queries, %d missing", name, report.n_images, report.n_queries,
                len(report.missing))
    return report


if __name__ == "__main__":
    from jsonargparse import CLI

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    CLI({"prepare": prepare, "validate": validate})
