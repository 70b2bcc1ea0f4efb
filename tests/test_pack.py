"""The shipped rule pack: coverage of the vocabulary and the documents; refusal of bad packs."""

import shutil

import pytest
import yaml

from denial_model.resources import bundled_path
from denial_model.rules.pack import CATEGORIES, DOCUMENT_SECTIONS, PackError, load_pack


def test_every_category_of_the_vocabulary_is_used(pack):
    assert {r.category for r in pack.rules} == set(CATEGORIES)


def test_every_rule_cites_a_source_message_and_fix(pack):
    for r in pack.rules:
        assert r.source and r.message and r.fix, r.id


@pytest.mark.parametrize("policy", ["esketamine", "ketamine", "naltrexone", "unclassified", "anakinra"])
def test_every_section_of_each_document_has_a_rule(pack, policy):
    pol = pack.policy(policy)
    cited = {r.source for r in pack.rules if r.policy == policy}
    for section in DOCUMENT_SECTIONS:
        if section == "Clinical Context" and policy == "unclassified":
            continue  # its clinical context states requirements covered by Denial Reasons (prior approval)
        assert any(s.startswith(pol.document) and section in s for s in cited), (policy, section)


def test_policies_record_document_and_official_codes_side_by_side(pack):
    docs = {p.document: (p.document_code.code, p.official_code.code, p.billed_as) for p in pack.policies}
    assert docs["000_6bf52a22d9bcaf7b.txt"][:2] == ("J3031", "S0013")
    assert docs["001_01b56a4fc31b08eb.txt"][0] == "J3000" and "J3490" in docs["001_01b56a4fc31b08eb.txt"][2]
    assert docs["002_1dfeabbeb215a215.txt"][:2] == ("J2311", "J2315")
    assert docs["003_7cfe9c3a589fcbda.txt"][:2] == ("J3490", "J3490")
    assert docs["004_605e14ebff08a4b5.txt"][0] == "J3246" and "J3590" in docs["004_605e14ebff08a4b5.txt"][2]


@pytest.fixture
def pack_copy(tmp_path):
    dst = tmp_path / "rules"
    shutil.copytree(bundled_path("rules"), dst)
    return dst


def _edit_first_rule(folder, file, change):
    path = folder / file
    data = yaml.safe_load(path.read_text())
    change(data["rules"][0])
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return data["rules"][0]["id"]


@pytest.mark.parametrize(
    ("file", "change", "field"),
    [
        ("common.yaml", lambda r: r.update(category="paperwork"), "category"),
        ("common.yaml", lambda r: r.update(carc="16"), "carc"),
        ("common.yaml", lambda r: r.pop("source"), "source"),
        ("common.yaml", lambda r: r.update(severity="maybe"), "severity"),
        ("common.yaml", lambda r: r.update(check={"kind": "astrology"}), "check.kind"),
        (
            "policies/esketamine.yaml",
            lambda r: r.update(check={"kind": "billed_under", "codes": ["J3"]}),
            "check.codes",
        ),
        (
            "policies/esketamine.yaml",
            lambda r: r.update(check={"kind": "billed_under"}),
            "check.codes",
        ),
        (
            "policies/esketamine.yaml",
            lambda r: r.update(applies_to={"payer_types": ["tricare"]}),
            "applies_to.payer_types",
        ),
        (
            "policies/esketamine.yaml",
            lambda r: r.update(source="000_6bf52a22d9bcaf7b.txt § Footnotes"),
            "source",
        ),
        ("policies/esketamine.yaml", lambda r: r.update(id="ketamine.stolen"), "id"),
        ("policies/naltrexone.yaml", lambda r: r.update(flavour="x"), "flavour"),
    ],
)
def test_bad_pack_is_refused_naming_file_rule_and_field(pack_copy, file, change, field):
    rid = _edit_first_rule(pack_copy, file, change)
    with pytest.raises(PackError) as exc:
        load_pack(pack_copy)
    msg = str(exc.value)
    assert file.split("/")[-1] in msg and f"'{field}'" in msg
    assert rid in msg


def test_duplicate_rule_id_is_refused(pack_copy):
    path = pack_copy / "common.yaml"
    data = yaml.safe_load(path.read_text())
    data["rules"].append(dict(data["rules"][0]))
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(PackError, match="duplicate"):
        load_pack(pack_copy)


def test_adding_a_rule_of_an_existing_kind_is_a_yaml_change_only(pack_copy):
    path = pack_copy / "policies" / "naltrexone.yaml"
    data = yaml.safe_load(path.read_text())
    data["rules"].append(
        {
            "id": "naltrexone.consent",
            "category": "documentation_missing",
            "carc": "CO-16",
            "severity": "risk",
            "check": {"kind": "documentation_required", "all_of": ["patient_consent"]},
            "message": "m",
            "fix": "f",
            "source": "002_1dfeabbeb215a215.txt § Documentation Requirements",
        }
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    new = load_pack(pack_copy)
    assert "naltrexone.consent" in new.ids
    assert new.sha256 != load_pack().sha256


def test_the_requirements_table_covers_every_document_section_and_names_only_real_rules(pack):
    from denial_model.rules.coverage import check_coverage

    assert check_coverage(pack) == []


def test_a_section_without_requirements_or_an_unknown_rule_is_reported(pack):
    import dataclasses

    from denial_model.rules.coverage import check_coverage, load_requirements

    reqs = load_requirements(pack)
    dropped = [r for r in reqs if not (r.policy == "ketamine" and r.section == "Similar Codes")]
    renamed = [dataclasses.replace(reqs[0], rules=("esketamine.no_such_rule",)), *reqs[1:]]
    assert any(
        "001_01b56a4fc31b08eb.txt § Similar Codes: no requirement" in p for p in check_coverage(pack, dropped)
    )
    assert any("no such rule 'esketamine.no_such_rule'" in p for p in check_coverage(pack, renamed))


def test_coverage_md_is_the_rendering_of_the_requirements_table(pack):
    from denial_model.rules.coverage import coverage_markdown

    shipped = (pack.folder / "COVERAGE.md").read_text()
    assert shipped == coverage_markdown(pack) + "\n", (
        "run: denial-model rules coverage --output rules/COVERAGE.md"
    )
