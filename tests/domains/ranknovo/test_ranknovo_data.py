"""Spectrum readers, preprocessing and candidate files (real fixtures from ../shared/data/peptides)."""

import pickle

import numpy as np
import pytest

from polyrank.domains.ranknovo.candidates import (REFERENCE_MODELS, candidates_from_mztabs,
                                                  read_candidate_pickle, read_candidate_table,
                                                  read_casanovo_mztab)
from polyrank.domains.ranknovo.peptides import parse_peptide
from polyrank.domains.ranknovo.spectra import PROTON, neutral_mass, preprocess, read_mgf, read_spectra
from polyrank.shared.errors import FormatError
from polyrank.shared.reproduce import data_dir

ROOT = data_dir()
PEPTIDES = ROOT / "peptides" if ROOT else None
needs_data = pytest.mark.skipif(PEPTIDES is None or not PEPTIDES.is_dir(),
                                reason="../shared/data/peptides absent")


@needs_data
def test_casanovo_sample_mgf_has_128_annotated_spectra_that_parse():
    read = read_mgf(PEPTIDES / "casanovo" / "sample_preprocessed_spectra.mgf")
    assert len(read.spectra) == 128 and not read.errors
    first = read.spectra[0]
    assert first.peptide == "IAHYNKR" and first.charge == 2
    assert first.precursor_mass == pytest.approx((451.25348 - PROTON) * 2)
    for s in read.spectra:
        parse_peptide(s.peptide)  # every SEQ= (ProForma C[Carbamidomethyl]) is understood


@needs_data
def test_mzml_mzxml_and_mgf_agree_on_the_tmt_fixture():
    mgf = read_spectra(PEPTIDES / "formats" / "TMT10-Trial-8.mgf")
    mzml = read_spectra(PEPTIDES / "formats" / "TMT10-Trial-8.mzML")
    mzxml = read_spectra(PEPTIDES / "formats" / "TMT10-Trial-8.mzXML")
    assert len(mzml.spectra) == len(mzxml.spectra) == 4  # the 4 MS2 scans; MS1/MS3 are skipped
    for a, b in zip(mzml.spectra, mzxml.spectra):
        assert a.precursor_mz == pytest.approx(b.precursor_mz) and a.charge == b.charge
        np.testing.assert_allclose(a.mz, b.mz, rtol=1e-6)
    # the MGF record without CHARGE is reported with its line, the other 6 are read
    assert len(mgf.spectra) == 6 and len(mgf.errors) == 1 and mgf.errors[0].line == 234
    assert "no CHARGE" in str(mgf.errors[0])


@needs_data
@pytest.mark.parametrize("name, kind", [("TMT10-Trial-8.mzML", "mzML"), ("TMT10-Trial-8.mzXML", "mzXML")])
def test_truncated_real_mzml_and_mzxml_raise_a_located_format_error(tmp_path, name, kind):
    data = (PEPTIDES / "formats" / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 3])  # cut mid-spectrum, as an interrupted download would
    with pytest.raises(FormatError, match=rf"{name}:\d+: not a well-formed {kind} file .*truncated"):
        read_spectra(path)


def test_malformed_mgf_record_is_reported_with_its_position(tmp_path):
    good = "BEGIN IONS\nTITLE=a\nPEPMASS=500.5\nCHARGE=2+\nSEQ=PEPK\n100.1 5\n200.2 7\nEND IONS\n"
    bad = "BEGIN IONS\nTITLE=b\nPEPMASS=600.5\nCHARGE=2+\n100.1 five\nEND IONS\n"
    path = tmp_path / "x.mgf"
    path.write_text(good + bad + good.replace("TITLE=a", "TITLE=c"))
    read = read_mgf(path)
    assert [s.title for s in read.spectra] == ["a", "c"]
    assert len(read.errors) == 1 and read.errors[0].line == 9 and "record 2" in str(read.errors[0])
    assert str(path) in str(read.errors[0])
    with pytest.raises(FormatError, match=r"x.mgf:9"):
        read_mgf(path, strict=True)


def test_preprocess_follows_the_reference_steps():
    mz = np.array([40.0, 100.0, 200.0, 300.0, 500.0, 501.0, 999.0, 5000.0])
    inten = np.array([9.0, 4.0, 1.0, 16.0, 100.0, 100.0, 9.0, 9.0])
    # precursor m/z 500.5 at charge 2: neutral 998.985; charge-1 precursor at 999.99 (999.0 within 2 Da)
    out = preprocess(mz, inten, 500.5, 2, n_peaks=2)
    assert 40.0 not in out[:, 0] and 5000.0 not in out[:, 0]  # m/z range
    assert 500.0 not in out[:, 0] and 501.0 not in out[:, 0] and 999.0 not in out[:, 0]  # precursor peaks
    np.testing.assert_allclose(out[:, 0], [100.0, 300.0])  # top 2 of 100/200/300, in m/z order
    np.testing.assert_allclose(out[:, 1], np.array([2.0, 4.0]) / np.sqrt(20.0), rtol=1e-6)  # root, then L2
    assert (out[:, 1] ** 2).sum() == pytest.approx(1.0, rel=1e-6)
    assert preprocess(np.array([10.0]), np.array([1.0]), 500.0, 2).tolist() == [[0.0, 1.0]]  # dummy
    assert neutral_mass(500.5, 2) == pytest.approx(998.985448)


def test_reference_pickle_loads_safely_and_refuses_code(tmp_path):
    rows = [["PEPTIDEK", "PEPTIDEK", "PEPTLDEK", "PEPTIDEQ", "EPPTIDEK", "PEPTIDEK", "C+57.021PEK"]] * 3
    path = tmp_path / "bacillus.pkl"
    path.write_bytes(pickle.dumps(rows))
    cs = read_candidate_pickle(path)
    assert cs.models == list(REFERENCE_MODELS) and cs.truths == ["PEPTIDEK"] * 3
    assert cs.rows[0][-1] == "C+57.021PEK"
    assert cs.select(["ByNovo", "ContraNovo"]).rows[0] == ["PEPTIDEQ", "PEPTLDEK"]

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(FormatError, match="refusing to load global builtins.print"):
        read_candidate_pickle(evil)
    short = tmp_path / "short.pkl"
    short.write_bytes(pickle.dumps(rows[:1] + [["PEPK", "PEPK"]]))
    with pytest.raises(FormatError, match=r"short.pkl:2: item 2 should be a list of 7"):
        read_candidate_pickle(short)


@needs_data
def test_casanovo_v5_mztab_and_a_generic_mztab():
    v5 = read_casanovo_mztab(PEPTIDES / "formats" / "visualize_errors_test.mztab")
    assert len(v5) == 16
    assert parse_peptide(v5["ms_run[1]:index=1"])[0] == "+43.006"  # [Carbamyl]- ProForma
    assert "C+57.021" in parse_peptide(v5["ms_run[1]:index=2"])
    generic = read_casanovo_mztab(PEPTIDES / "formats" / "test.mztab")
    assert len(generic) > 100
    cs = candidates_from_mztabs({"v5": PEPTIDES / "formats" / "visualize_errors_test.mztab"},
                                ["ms_run[1]:index=0", "ms_run[1]:index=3"])
    assert cs.rows[0][0] == "EAAGAVPGMEEPMEPSMDEVATEAPPVEEELK" and cs.rows[1] == [None]


def test_candidate_table_csv_and_tsv(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("spectrum,casanovo,contranovo,true\ns1,PEPK,PEPQ,PEPK\ns2,,M[Oxidation]K,M+15.995K\n")
    cs = read_candidate_table(path)
    assert cs.models == ["casanovo", "contranovo"] and cs.rows[1] == [None, "M[Oxidation]K"]
    assert cs.truths == ["PEPK", "M+15.995K"] and cs.ids == ["s1", "s2"]
    tsv = tmp_path / "c.tsv"
    tsv.write_text("spectrum\tm1\ns1\tPEPK\ns2\tPEPZK\n")
    with pytest.raises(FormatError, match=r"c.tsv:3: unknown residue 'Z'"):
        read_candidate_table(tsv)


@needs_data
def test_casanovo_v4_mass_tag_mztab(tmp_path):
    # Casanovo v4 writes mass tags in `sequence` and has no ProForma column: derive such a file from the v5 one
    text = (PEPTIDES / "formats" / "visualize_errors_test.mztab").read_text()
    text = text.replace("opt_global_cv_MS:1003169_proforma_peptidoform_sequence", "opt_global_unused")
    text = text.replace("\tGPTPVARCVGKYCVQQLGKE\t", "\tGPTPVARC+57.021VGKYC+57.021VQQLGKE\t", 1)
    text = text.replace("\tAAAEAAAAEEEEEEEEEEEEEEEVKEEEK\t", "\t+43.006AAAEAAAAEEEEEEEEEEEEEEEVKEEEK\t", 1)
    path = tmp_path / "v4.mztab"
    path.write_text(text)
    v4 = read_casanovo_mztab(path)
    v5 = read_casanovo_mztab(PEPTIDES / "formats" / "visualize_errors_test.mztab")
    for ref in ("ms_run[1]:index=1", "ms_run[1]:index=2"):
        assert parse_peptide(v4[ref]) == parse_peptide(v5[ref])
