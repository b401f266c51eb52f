"""`domain` is a free name in a spec; the fits say which two domains they compare."""

from intrinsics.study.fits import compared_domains, fit_study
from intrinsics.study.verdicts import claims


def _rows(domains_kf):
    rows = []
    for dom, kf in domains_kf:
        for i, N in enumerate((100, 200, 400)):
            for d in (8.0, 12.0):
                rows.append({"dataset": f"{dom}-{d}", "domain": dom, "model": "m", "N": N, "seed": i, "d_data": d,
                             "K_F": kf * d / 8, "test_loss": kf * N ** (-1 / d)})
    return rows


def test_natural_is_the_reference_when_present():
    pair = compared_domains(_rows([("medical", 3.0), ("natural", 1.0)]))
    assert (pair["reference"], pair["sharp"]) == ("natural", "medical")


def test_other_names_the_lower_kf_domain_is_the_reference():
    pair = compared_domains(_rows([("xray", 4.0), ("photo", 0.5)]))
    assert (pair["reference"], pair["sharp"]) == ("photo", "xray") and "lower mean log K_F" in pair["rule"]
    fits = fit_study(_rows([("xray", 4.0), ("photo", 0.5)]), n_bootstrap=30).to_dict()
    assert fits["domains"]["sharp"] == "xray" and fits["kf_law"]["reference_domain"] == "photo"
    c = claims(fits)
    law = next(x for x in c if x["claim"].startswith("Test loss follows the K_F-aware law"))
    assert c[0]["claim"].endswith("faster for xray images") and "xray–photo gap" in law["claim"]
    assert c[0]["evidence"][-1].startswith("domains compared: 'xray' against 'photo'")


def test_three_domains_are_not_compared_and_say_so():
    pair = compared_domains(_rows([("a", 1.0), ("b", 2.0), ("c", 3.0)]))
    assert pair["reference"] is None and "this study has 3 (a, b, c)" in pair["rule"]
    c = claims(fit_study(_rows([("a", 1.0), ("b", 2.0), ("c", 3.0)]), n_bootstrap=30).to_dict())
    assert c[0]["evidence"][-1].startswith("no domains compared: the fits compare two domains")

