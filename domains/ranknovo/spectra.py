"""MS/MS spectra: MGF / mzXML readers (pyteomics), an mzML reader (lxml) and RankNovo's peak preprocessing.

Preprocessing follows depthcharge-0.1's ``_process_peaks`` as used by RankNovo/Casanovo (spectrum_utils
``MsmsSpectrum`` steps), re-implemented with numpy:

1. ``set_mz_range(50.5, 4500)``;
2. ``remove_precursor_peak(2.0, "Da")``: drop peaks within 2 Da of the precursor m/z at every charge
   from the precursor charge down to 1 (spectrum_utils' charge-reduced precursor list, isotope 0);
3. ``filter_intensity(min_intensity=0, max_num_peaks=300)``: keep the 300 most intense peaks (and those
   above ``min_intensity`` x the base peak), in m/z order;
4. ``scale_intensity("root", 1)`` (square root) then L2 normalisation.

An empty result becomes the reference's dummy spectrum ``[[0, 1]]``. The precursor neutral mass is
``(m/z - 1.007276) * z``.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polyrank.shared.errors import FormatError, PolyrankError

logger = logging.getLogger(__name__)

PROTON = 1.007276


@dataclass
class Spectrum:
    """One MS/MS spectrum: peaks, precursor m/z and charge, an optional annotated peptide (``SEQ=``)."""

    mz: np.ndarray
    intensity: np.ndarray
    precursor_mz: float
    charge: int
    title: str = ""
    peptide: str | None = None
    index: int = 0

    @property
    def precursor_mass(self) -> float:
        """Neutral precursor mass, ``(m/z - 1.007276) * z``."""
        return neutral_mass(self.precursor_mz, self.charge)


@dataclass
class SpectraRead:
    """What a reader returns: the good spectra and one :class:`FormatError` per skipped record."""

    spectra: list[Spectrum]
    errors: list[FormatError] = field(default_factory=list)


def neutral_mass(precursor_mz: float, charge: int) -> float:
    """Precursor neutral mass from m/z and charge (RankNovo's ``precursors[:, 0]``)."""
    return (precursor_mz - PROTON) * charge


def preprocess(mz: np.ndarray, intensity: np.ndarray, precursor_mz: float, charge: int, min_mz: float = 50.5,
               max_mz: float = 4500.0, remove_precursor_tol: float = 2.0, n_peaks: int = 300,
               min_intensity: float = 0.0) -> np.ndarray:
    """RankNovo's peak preprocessing; returns ``(n, 2)`` float32 ``[m/z, intensity]`` (see module doc)."""
    mz = np.asarray(mz, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    keep = (mz >= min_mz) & (mz <= max_mz)
    mz, intensity = mz[keep], intensity[keep]
    mass = neutral_mass(precursor_mz, charge)
    for z in range(max(int(charge), 1), 0, -1):
        mz_z = mass / z + PROTON
        keep = np.abs(mz - mz_z) > remove_precursor_tol
        mz, intensity = mz[keep], intensity[keep]
    if len(mz):
        keep = intensity >= min_intensity * intensity.max()
        mz, intensity = mz[keep], intensity[keep]
        if len(mz) > n_peaks:
            top = np.sort(np.argsort(intensity, kind="stable")[-n_peaks:])
            mz, intensity = mz[top], intensity[top]
    if not len(mz) or not np.any(intensity > 0):
        return np.array([[0.0, 1.0]], dtype=np.float32)
    intensity = np.sqrt(intensity)
    intensity = intensity / np.linalg.norm(intensity)
    return np.stack([mz, intensity], axis=1).astype(np.float32)


def _charge(value: object) -> int:
    if isinstance(value, (list, tuple, np.ndarray)):
        value = value[0] if len(value) else None
    if value is None:
        raise ValueError("no CHARGE")
    return int(value)


def _mgf_records(text: str) -> list[tuple[int, str]]:
    """``(first line number, block text)`` of each BEGIN IONS ... END IONS record."""
    records, start, lines = [], None, text.splitlines()
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == "BEGIN IONS":
            if start is not None:
                records.append((start, "\n".join(lines[start - 1:number - 1])))  # unterminated: let it fail
            start = number
        elif stripped == "END IONS" and start is not None:
            records.append((start, "\n".join(lines[start - 1:number])))
            start = None
    if start is not None:
        records.append((start, "\n".join(lines[start - 1:])))
    return records


def _parse_mgf_record(block: str, index: int) -> Spectrum:
    from pyteomics import mgf

    if not block.rstrip().endswith("END IONS"):
        raise ValueError("record has no END IONS")
    for line in block.splitlines()[1:-1]:
        is_peak = re.fullmatch(r"\s*[-+0-9.eE]+(\s+[-+0-9.eE]+){0,2}\s*", line)
        if line.strip() and "=" not in line and not is_peak:
            raise ValueError(f"peak line {line.strip()!r} is not 'm/z intensity'")
    parsed = list(mgf.read(io.StringIO(block), use_index=False, convert_arrays=1, read_charges=False))
    if len(parsed) != 1:
        raise ValueError("could not parse the record")
    params = parsed[0]["params"]
    if "pepmass" not in params:
        raise ValueError("no PEPMASS")
    return Spectrum(mz=np.asarray(parsed[0]["m/z array"], dtype=np.float64),
                    intensity=np.asarray(parsed[0]["intensity array"], dtype=np.float64),
                    precursor_mz=float(params["pepmass"][0]), charge=_charge(params.get("charge")),
                    title=str(params.get("title", index)), peptide=params.get("seq"), index=index)


def read_mgf(path: str | Path, strict: bool = False) -> SpectraRead:
    """Read every record of an MGF file; a malformed record is skipped and reported with its line.

    ``strict=True`` raises the first :class:`FormatError` instead of collecting it.
    """
    path = Path(path)
    if not path.is_file():
        raise PolyrankError(f"MGF file {path} does not exist")
    out = SpectraRead([])
    for index, (line, block) in enumerate(_mgf_records(path.read_text(errors="replace"))):
        try:
            out.spectra.append(_parse_mgf_record(block, index))
        except Exception as exc:  # pyteomics raises several types; each becomes a located FormatError
            message = f"MGF record {index + 1} (BEGIN IONS at this line) skipped: {exc}"
            _report(out, FormatError(path, line, message), strict, exc)
    return out


def _mzxml_precursor(scan: dict) -> tuple[float, int]:
    precursor = scan["precursorMz"][0]
    return float(precursor["precursorMz"]), _charge(precursor.get("precursorCharge"))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _cv(element: object) -> dict[str, str]:
    return {p.get("name"): p.get("value", "") for p in element.iter() if _local(p.tag) == "cvParam"}


def _binary(array_element: object) -> tuple[str, np.ndarray]:
    import base64
    import zlib

    params = {p.get("name") for p in array_element.iter() if _local(p.tag) == "cvParam"}
    raw = base64.b64decode(next(e.text or "" for e in array_element.iter() if _local(e.tag) == "binary"))
    if "zlib compression" in params:
        raw = zlib.decompress(raw)
    values = np.frombuffer(raw, dtype=np.float32 if "32-bit float" in params else np.float64)
    kind = "mz" if "m/z array" in params else "intensity" if "intensity array" in params else "other"
    return kind, values.astype(np.float64)


def _mzml_spectrum(element: object, number: int, index: int) -> Spectrum | None:
    """One ``<spectrum>`` element parsed with lxml (``None`` when it is not MS2)."""
    own = {p.get("name"): p.get("value", "") for p in element if _local(p.tag) == "cvParam"}
    if own.get("ms level") != "2":
        return None
    precursor = next((e for e in element.iter() if _local(e.tag) == "selectedIon"), None)
    if precursor is None:
        raise ValueError("no selectedIon")
    ion = _cv(precursor)
    charge = ion.get("charge state") or ion.get("possible charge state") or ion.get("assumed charge state")
    arrays = dict(_binary(a) for a in element.iter() if _local(a.tag) == "binaryDataArray")
    return Spectrum(arrays["mz"], arrays["intensity"], float(ion["selected ion m/z"]), _charge(charge),
                    element.get("id", str(number)), index=index)


def _read_mzml_lxml(path: Path, strict: bool) -> SpectraRead:
    """mzML reader on lxml (pyteomics' mzML parser needs the optional ``psims`` package)."""
    from lxml import etree

    out = SpectraRead([])
    number = 0
    for _, element in etree.iterparse(str(path), events=("end",), tag="{*}spectrum"):
        number += 1
        try:
            spectrum = _mzml_spectrum(element, number, len(out.spectra))
            if spectrum is not None:
                out.spectra.append(spectrum)
        except (KeyError, ValueError, StopIteration) as exc:
            _report(out, FormatError(path, number, f"spectrum {number} skipped: {exc!r}"), strict, exc)
        element.clear()
    return out


def _report(out: SpectraRead, error: FormatError, strict: bool, cause: Exception) -> None:
    if strict:
        raise error from cause
    logger.warning("%s", error)
    out.errors.append(error)


def read_mzml(path: str | Path, strict: bool = False) -> SpectraRead:
    """MS2 spectra of an mzML (lxml) or mzXML (pyteomics) file; unusable MS2 scans are reported, skipped."""
    from pyteomics import mzxml

    path = Path(path)
    if not path.is_file():
        raise PolyrankError(f"spectrum file {path} does not exist")
    if path.suffix.lower() != ".mzxml":
        return _read_mzml_lxml(path, strict)
    out = SpectraRead([])
    with mzxml.read(str(path)) as reader:
        for number, scan in enumerate(reader, start=1):
            if int(scan.get("msLevel", 0)) != 2:
                continue
            try:
                mz, charge = _mzxml_precursor(scan)
                peaks = np.asarray(scan["m/z array"], float), np.asarray(scan["intensity array"], float)
                out.spectra.append(Spectrum(*peaks, mz, charge, str(scan.get("id", number)),
                                            index=len(out.spectra)))
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                message = f"scan {number} skipped: no usable precursor ({exc!r})"
                _report(out, FormatError(path, number, message), strict, exc)
    return out


def read_spectra(path: str | Path, strict: bool = False) -> SpectraRead:
    """Dispatch on the suffix: ``.mgf``, ``.mzml``, ``.mzxml``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".mgf":
        return read_mgf(path, strict)
    if suffix in (".mzml", ".mzxml"):
        return read_mzml(path, strict)
    raise PolyrankError(f"{path}: unsupported spectrum format {suffix!r}; expected .mgf, .mzML or .mzXML")
