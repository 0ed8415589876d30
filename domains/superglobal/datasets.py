"""``prepare``: download (when a network exists) and validate ROxford5k, RParis6k and R1M.

    python -m polyrank.domains.superglobal.datasets prepare roxford5k --root /data/revisitop
    python -m polyrank.domains.superglobal.datasets prepare rparis6k --root /data/revisitop --download false

Sources are those of the official revisitop ``download.py`` (Radenovic et al., CVPR 2018); see
``datasets/<name>/README.md``. Validation reads the ground truth with the restricted unpickler, checks
the image and query counts, and that every listed image exists under ``jpg/``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from polyrank.domains.superglobal.data import read_gnd
from polyrank.shared.atomic import atomic_write_text
from polyrank.shared.errors import MissingResourceError, PolyrankError

logger = logging.getLogger(__name__)

# https everywhere: www.robots.ox.ac.uk serves https; for cmp.felk.cvut.cz / ptak.felk.cvut.cz (the revisitop
# hosts, whose official download.py uses http) https could not be checked from here. A failed https download is
# never retried over http: prepare() then prints which files to place where by hand.
GND_URL = "https://cmp.felk.cvut.cz/revisitop/data/datasets/{name}/gnd_{name}.pkl"
SOURCES = {
    "roxford5k": ["https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/oxbuild_images-v1.tgz"],
    "rparis6k": ["https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_1-v1.tgz",
                 "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_2-v1.tgz"],
    "revisitop1m": [f"https://ptak.felk.cvut.cz/revisitop/revisitop1m/jpg/revisitop1m.{i}.tar.gz"
                    for i in range(1, 101)],
}
R1M_LIST_URL = "https://ptak.felk.cvut.cz/revisitop/revisitop1m/revisitop1m.txt"
EXPECTED = {"roxford5k": (4993, 70), "rparis6k": (6322, 70), "revisitop1m": (1_001_001, 0)}
#: sha256 of each downloaded file by name. None = unknown here (no network to compute it and no published
#: digest): computed and printed on first download and written to a ``<file>.sha256`` sidecar that later runs
#: verify. Replace a None by the printed digest once it is known to be the official file.
SHA256: dict[str, str | None] = {
    "gnd_roxford5k.pkl": None, "gnd_rparis6k.pkl": None, "revisitop1m.txt": None,
    "oxbuild_images-v1.tgz": None, "paris_1-v1.tgz": None, "paris_2-v1.tgz": None,
    **{f"revisitop1m.{i}.tar.gz": None for i in range(1, 101)},
}


class ChecksumError(PolyrankError):
    """A downloaded or hand-placed file does not have the recorded sha256."""


def sha256_of(path: str | Path, block: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str | None = None) -> str:
    """Check ``path`` against ``expected``, else against its ``<file>.sha256`` sidecar, else create the sidecar.

    Returns the digest. A mismatch raises :class:`ChecksumError` naming both digests and the fix.
    """
    path = Path(path)
    sidecar = path.with_name(path.name + ".sha256")
    actual = sha256_of(path)
    recorded, source = expected, "the digest recorded in polyrank.domains.superglobal.datasets.SHA256"
    if recorded is None and sidecar.is_file():
        recorded, source = sidecar.read_text().split()[0], f"{sidecar} (written when it was first downloaded)"
    if recorded is None:
        atomic_write_text(sidecar, f"{actual}  {path.name}\n")
        print(f"sha256 {actual}  {path} (no recorded digest: written to {sidecar}; later runs verify it)")
        return actual
    if actual != recorded.lower():
        raise ChecksumError(f"{path}: sha256 {actual} does not match {recorded} from {source}; the file is corrupt "
                            "or not the official one: delete it (and its .sha256 sidecar if the sidecar is wrong) "
                            "and run prepare again")
    return actual


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
        urllib.request.urlopen("https://cmp.felk.cvut.cz/", timeout=timeout).close()
        return True
    except OSError:
        return False


def files(name: str, root: str | Path) -> list[tuple[str, Path]]:
    """Every ``(url, target path)`` that :func:`download` fetches for ``name`` under ``root``."""
    folder = Path(root) / name
    first = (R1M_LIST_URL, folder / "revisitop1m.txt") if name == "revisitop1m" else \
        (GND_URL.format(name=name), folder / f"gnd_{name}.pkl")
    return [first] + [(url, folder / "archives" / url.rsplit("/", 1)[-1]) for url in SOURCES[name]]


def _fetch(url: str, target: Path) -> Path:
    """Download ``url`` to ``target`` (via ``<target>.part``) unless present; verify its sha256 either way."""
    if not target.is_file():
        logger.info("downloading %s", url)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as handle:
            shutil.copyfileobj(response, handle)
        try:
            verify_sha256(partial, SHA256.get(target.name))
        except ChecksumError:
            partial.unlink()
            raise
        sidecar = partial.with_name(partial.name + ".sha256")
        if sidecar.is_file():
            sidecar.replace(target.with_name(target.name + ".sha256"))
        partial.replace(target)
    else:
        verify_sha256(target, SHA256.get(target.name))
    return target


def _extract_flat(archive: Path, jpg: Path) -> None:
    """Extract every image of ``archive`` straight into ``jpg/`` (the revisitop layout is flat), once."""
    marker = archive.with_name(archive.name + ".extracted")
    if marker.is_file():
        return
    jpg.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.lower().endswith(".jpg"):
                source = tar.extractfile(member)
                if source is not None:
                    (jpg / Path(member.name).name).write_bytes(source.read())
    atomic_write_text(marker, "ok\n")


def download(name: str, root: str | Path, network: bool = True) -> list[tuple[str, Path]]:
    """Fetch (when ``network``) or verify the official files into ``root/name`` and extract the archives.

    Files already present (downloaded earlier or placed by hand) are verified, not fetched again. Returns the
    ``(url, target)`` pairs still missing (always empty with a network, unless a download failed).
    """
    if name not in SOURCES:
        raise PolyrankError(f"unknown dataset {name!r}; expected one of {sorted(SOURCES)}")
    missing = []
    jpg = Path(root) / name / "jpg"
    have_images = jpg.is_dir() and any(jpg.iterdir())
    for url, target in files(name, root):
        if not network and not target.is_file() and target.parent.name == "archives" and have_images:
            continue  # a hand-placed jpg/ folder needs no archives; validate() checks it
        if target.is_file() or network:
            _fetch(url, target)
            if target.parent.name == "archives":
                _extract_flat(target, Path(root) / name / "jpg")
        else:
            missing.append((url, target))
    return missing


def place_by_hand(name: str, missing: list[tuple[str, Path]]) -> str:
    """The instructions printed when files cannot be downloaded: which file goes where."""
    lines = [f"{name}: no network; place these files by hand (then run prepare again: archives are verified "
             "and extracted into jpg/):"]
    lines += [f"  {target}    <- {url}" for url, target in missing]
    lines.append(f"  (or put the extracted images directly under {missing[0][1].parent.parent / 'jpg'}/)")
    return "\n".join(lines)


def prepare(name: str, root: str = "data/revisitop", download_if_possible: bool = True) -> Report:
    """Download when a network exists (and ``download_if_possible``), verify checksums, then validate.

    Without a network, files already placed are verified and extracted, and the missing ones are printed
    with where to put them.

    Args:
        name: roxford5k, rparis6k or revisitop1m.
        root: folder that holds (or will hold) ``<name>/``.
        download_if_possible: try the official sources first; false only validates a hand-placed copy.
    """
    if name not in SOURCES:
        raise PolyrankError(f"unknown dataset {name!r}; expected one of {sorted(SOURCES)}")
    if download_if_possible:
        missing = download(name, root, network=_network())
        if missing:
            print(place_by_hand(name, missing))
    report = validate(name, root)
    logger.info("%s: %d images, %d queries, %d missing", name, report.n_images, report.n_queries,
                len(report.missing))
    return report


if __name__ == "__main__":
    from jsonargparse import CLI

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    CLI({"prepare": prepare, "validate": validate})
