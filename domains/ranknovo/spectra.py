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

Bad input: a malformed record (no PEPMASS or CHARGE, a charge that is not positive, a bad peak line, an
unreadable mzML ``<spectrum>``) is skipped and reported as a :class:`FormatError` with its line or spectrum
number (raised at once with ``strict=True``). Whole-file problems always raise: bytes that are not UTF-8
text in an MGF, XML that is not well formed (e.g. a truncated mzML), and a file that yields no spectrum.
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
    """The (first) precursor charge; RankNovo's masses assume positive-mode spectra, so it must be >= 1."""
    if isinstance(value, (list, tuple, np.ndarray)):
        value = value[0] if len(value) else None
    if value is None or value == "":
        raise ValueError("no CHARGE")
    charge = int(value)
    if charge < 1:
        raise ValueError(f"charge {charge} is not a positive charge (RankNovo's precursor masses assume "
                         "positive-mode spectra, z >= 1)")
    return charge


def _text(path: Path, data: bytes, what: str) -> str:
    """``data`` decoded as UTF-8, or a :class:`FormatError` with the line and byte offset of the first bad byte."""
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    bad = data.find(b"\x00")
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = start + exc.start if bad < 0 else min(bad, start + exc.start)
    else:
        if bad < 0:
            return text
    raise FormatError(path, data.count(b"\n", 0, bad) + 1,
                      f"not a text file: byte 0x{data[bad]:02x} at byte offset {bad} is not UTF-8 text (a binary or "
                      "compressed file, or text in another encoding: re-encode it as UTF-8, e.g. iconv -f latin1 "
                      f"-t utf-8); expected {what}")


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


def _mgf_param_line(block: str, key: str) -> tuple[int, str] | None:
    """``(line offset within the block, value)`` of the first ``KEY=value`` line."""
    for offset, line in enumerate(block.splitlines()):
        name, sep, value = line.strip().partition("=")
        if sep and name.upper() == key:
            return offset, value.strip()
    return None


def _parse_mgf_record(block: str, index: int, first_line: int = 1) -> Spectrum:
    from pyteomics import mgf

    if not block.rstrip().endswith("END IONS"):
        raise ValueError("record has no END IONS")
    for offset, line in enumerate(block.splitlines()[1:-1], start=1):
        is_peak = re.fullmatch(r"\s*[-+0-9.eE]+(\s+[-+0-9.eE]+){0,2}\s*", line)
        if line.strip() and "=" not in line and not is_peak:
            raise ValueError(f"peak line {line.strip()!r} (line {first_line + offset}) is not 'm/z intensity'")
    charge_line = _mgf_param_line(block, "CHARGE")
    parsed = list(mgf.read(io.StringIO(block), use_index=False, convert_arrays=1, read_charges=False))
    if len(parsed) != 1:
        raise ValueError("could not parse the record")
    params = parsed[0]["params"]
    if "pepmass" not in params:
        raise ValueError("no PEPMASS")
    try:
        charge = _charge(params.get("charge"))
    except ValueError as exc:
        if charge_line is None:
            raise
        raise ValueError(f"CHARGE={charge_line[1]} (line {first_line + charge_line[0]}): {exc}") from None
    return Spectrum(mz=np.asarray(parsed[0]["m/z array"], dtype=np.float64),
                    intensity=np.asarray(parsed[0]["intensity array"], dtype=np.float64),
                    precursor_mz=float(params["pepmass"][0]), charge=charge,
                    title=str(params.get("title", index)), peptide=params.get("seq"), index=index)


_MGF_EXPECTED = "MGF records 'BEGIN IONS', 'PEPMASS=...', 'CHARGE=2+', 'm/z intensity' peak lines, 'END IONS'"


def read_mgf(path: str | Path, strict: bool = False) -> SpectraRead:
    """Read every record of an MGF file; a malformed record is skipped and reported with its line.

    ``strict=True`` raises the first :class:`FormatError` instead of collecting it.
    """
    path = Path(path)
    if not path.is_file():
        raise PolyrankError(f"MGF file {path} does not exist")
    out = SpectraRead([])
    records = _mgf_records(_text(path, path.read_bytes(), _MGF_EXPECTED))
    if not records:
        raise FormatError(path, None, f"no spectrum found: no 'BEGIN IONS' line; expected {_MGF_EXPECTED}")
    for index, (line, block) in enumerate(records):
        try:
            out.spectra.append(_parse_mgf_record(block, index, line))
        except Exception as exc:  # pyteomics raises several types; each becomes a located FormatError
            title = _mgf_param_line(block, "TITLE")
            named = f"TITLE={title[1]}; " if title else ""
            message = f"MGF record {index + 1} ({named}BEGIN IONS at this line) skipped: {exc}"
            _report(out, FormatError(path, line, message), strict, exc)
    return _nonempty(path, out, f"{len(records)} MGF records")


def _mzxml_precursor(scan: dict) -> tuple[float, int]:
    precursor = scan["precursorMz"][0]
    return float(precursor["precursorMz"]), _charge(precursor.get("precursorCharge"))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _cv(element: object) -> dict[str, str]:
    return {p.get("name"): p.get("value", "") for p in element.iter() if _local(p.tag) == "cvParam"}


def _nonempty(path: Path, out: SpectraRead, seen: str) -> SpectraRead:
    """``out``, or a :class:`FormatError` when no spectrum could be read at all."""
    if out.spectra:
        return out
    first = f"; first problem: {out.errors[0]}" if out.errors else ""
    line = out.errors[0].line if out.errors else None
    raise FormatError(path, line, f"no usable MS2 spectrum among {seen}{first}")


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
    if len(arrays["mz"]) != len(arrays["intensity"]):
        raise ValueError(f"{len(arrays['mz'])} m/z values but {len(arrays['intensity'])} intensities")
    return Spectrum(arrays["mz"], arrays["intensity"], float(ion["selected ion m/z"]), _charge(charge),
                    element.get("id", str(number)), index=index)


def _xml_error(path: Path, exc: Exception, read: int, kind: str) -> FormatError:
    """A located error for XML that is not well formed (truncated file, binary data, wrong format)."""
    position = getattr(exc, "position", None) or (getattr(exc, "lineno", None), None)
    line = position[0] or None
    where = f" (column {position[1]})" if line and position[1] else ""
    return FormatError(path, line, f"not a well-formed {kind} file{where} after {read} complete spectra: {exc}; "
                       "the file may be truncated (re-download or re-convert it) or not be XML at all")


def _read_mzml_lxml(path: Path, strict: bool) -> SpectraRead:
    """mzML reader on lxml (pyteomics' mzML parser needs the optional ``psims`` package)."""
    import zlib

    from lxml import etree

    out = SpectraRead([])
    number = 0
    try:
        for _, element in etree.iterparse(str(path), events=("end",), tag="{*}spectrum"):
            number += 1
            try:
                spectrum = _mzml_spectrum(element, number, len(out.spectra))
                if spectrum is not None:
                    out.spectra.append(spectrum)
            except (KeyError, ValueError, StopIteration, zlib.error) as exc:
                message = f"spectrum {number} (id={element.get('id', '?')!r}) skipped: {exc!r}"
                _report(out, FormatError(path, number, message), strict, exc)
            element.clear()
    except etree.XMLSyntaxError as exc:
        raise _xml_error(path, exc, number, "mzML") from None
    if not number:
        raise FormatError(path, None, "no <spectrum> element found; expected an mzML file "
                          "(<mzML><run><spectrumList><spectrum>...)")
    return _nonempty(path, out, f"{number} <spectrum> elements")


def _report(out: SpectraRead, error: FormatError, strict: bool, cause: Exception) -> None:
    if strict:
        raise error from cause
    logger.warning("%s", error)
    out.errors.append(error)


def read_mzml(path: str | Path, strict: bool = False) -> SpectraRead:
    """MS2 spectra of an mzML (lxml) or mzXML (pyteomics) file; unusable MS2 scans are reported, skipped."""
    from lxml import etree
    from pyteomics import mzxml
    from pyteomics.auxiliary import PyteomicsError

    path = Path(path)
    if not path.is_file():
        raise PolyrankError(f"spectrum file {path} does not exist")
    if path.suffix.lower() != ".mzxml":
        return _read_mzml_lxml(path, strict)
    out = SpectraRead([])
    number = 0
    try:
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
                    message = f"scan {number} (id={scan.get('id', '?')!r}) skipped: no usable precursor ({exc!r})"
                    _report(out, FormatError(path, number, message), strict, exc)
    except (etree.XMLSyntaxError, PyteomicsError) as exc:
        raise _xml_error(path, exc, number, "mzXML") from None
    if not number:
        raise FormatError(path, None, "no <scan> element found; expected an mzXML file (<mzXML><msRun><scan>...)")
    return _nonempty(path, out, f"{number} scans")


def read_spectra(path: str | Path, strict: bool = False) -> SpectraRead:
    """Dispatch on the suffix: ``.mgf``, ``.mzml``, ``.mzxml``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".mgf":
        return read_mgf(path, strict)
    if suffix in (".mzml", ".mzxml"):
        return read_mzml(path, strict)
    raise PolyrankError(f"{path}: unsupported spectrum format {suffix!r}; expected .mgf, .mzML or .mzXML")
