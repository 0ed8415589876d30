"""One parser for every notation: round trips and clear errors."""

import pytest

from polyrank.domains.ranknovo.peptides import (PeptideError, parse_peptide, to_marks, to_mass_tags,
                                                to_proforma)

NOTATIONS = [
    ("PEPM+15.995C+57.021K", "PEPM[Oxidation]C[Carbamidomethyl]K", "PEPM[+15.995]C[+57.021]K"),
    ("+42.011PEPTIDE", "[Acetyl]-PEPTIDE", "[+42.011]-PEPTIDE"),
    ("+43.006-17.027PEN+0.984Q+0.984K", "[+25.980265]-PEN[Deamidated]Q[Deamidated]K",
     "[Carbamyl][Ammonia-loss]-PEN[+0.984]Q[+0.984]K"),
    ("-17.027QPEPIL", "[Ammonia-loss]-QPEPIL", "[-17.027]-QPEPIL"),
]


@pytest.mark.parametrize("tags, names, deltas", NOTATIONS)
def test_all_notations_give_the_same_tokens_and_round_trip(tags, names, deltas):
    tokens = parse_peptide(tags)
    assert parse_peptide(names) == tokens == parse_peptide(deltas)
    assert to_mass_tags(tokens) == tags
    assert parse_peptide(to_proforma(tokens)) == tokens
    assert parse_peptide(to_mass_tags(parse_peptide(names))) == tokens


def test_marks_match_the_reference_and_map_i_to_l():
    assert to_marks(parse_peptide("+43.006-17.027C+57.021M+15.995IK")) == "501LK"
    assert to_marks(parse_peptide("IL"), i_to_l=False) == "IL"
    assert parse_peptide("I") != parse_peptide("L")  # the parser keeps I; only the MSA merges them


@pytest.mark.parametrize("bad, culprit", [("PEPXIDE", "'X'"), ("PEPM[Phospho]K", "'Phospho'"),
                                          ("PEPS+79.966K", r"'\+79.966'"), ("[Foo]-PEPK", "'Foo'"),
                                          ("pepk", "'p'")])
def test_unknown_residue_or_modification_is_named(bad, culprit):
    with pytest.raises(PeptideError, match=culprit):
        parse_peptide(bad)
