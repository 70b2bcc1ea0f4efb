"""`rules verify` reports every disagreement between the documents and the code set."""

from denial_model.rules.verify import verify


def test_the_four_document_code_disagreements_are_listed(pack, ref):
    found = verify(pack, ref)
    doc_codes = {(d.source, d.code) for d in found if d.kind == "document_code"}
    assert doc_codes == {
        ("000_6bf52a22d9bcaf7b.txt", "J3031"),
        ("001_01b56a4fc31b08eb.txt", "J3000"),
        ("002_1dfeabbeb215a215.txt", "J2311"),
        ("004_605e14ebff08a4b5.txt", "J3246"),
    }


def test_units_terminations_and_similar_codes_are_reported(pack, ref):
    found = {(d.kind, d.code) for d in verify(pack, ref)}
    assert ("document_unit", "J3000") in found  # 10 mg in the document, up to 1 g in the code set
    assert ("document_unit", "J3246") in found  # 1 mg vs 0.25 mg
    assert ("terminated_code", "J2311") in found
    assert ("similar_code", "J1630") in found  # document: ketorolac; code set: haloperidol
    assert not any(code == "J3490" for _, code in found)  # the NOC document agrees
