"""What the check kinds read about a claim table, computed once per table.

A `Context` wraps a validated `ClaimFrame` with the facts every rule may need: each line's
drug (from its NDC, its description or an official code), the code set's facts about each
code, groupings by claim and patient, days as integers. Each fact is computed on first use
and on the distinct values of a column, never per row.
"""

from __future__ import annotations

import re
from functools import cached_property

import numpy as np
import pandas as pd

from denial_model.reference import Reference
from denial_model.table import ClaimFrame

__all__ = ["Context"]


class Context:
    """Per-table facts shared by all rules: drug identity, code facts, groupings."""

    def __init__(self, frame: ClaimFrame, pack, ref: Reference):
        """`pack`: the `RulePack` being evaluated (its policies and NOC codes)."""
        self.frame = frame
        self.pack = pack
        self.ref = ref
        self.n = frame.n

    def factor(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(codes, uniques) of a column or of the derived `drug`, computed once per table."""
        return self._drug_factor if name == "drug" else self.frame.factor(name)

    @cached_property
    def _drug_factor(self) -> tuple[np.ndarray, np.ndarray]:
        codes, uniques = pd.factorize(self.drug, use_na_sentinel=False)
        return codes, np.asarray(uniques, dtype=object)

    @cached_property
    def _isin(self) -> dict[tuple, np.ndarray]:
        return {}

    def isin(self, name: str, values) -> np.ndarray:
        """`column in values` for every line, tested on the column's distinct values only
        (once per table and value list: many rules share a selector)."""
        key = (name, tuple(values))
        if key not in self._isin:
            codes, uniques = self.factor(name)
            wanted = set(key[1])
            hit = np.fromiter((u in wanted for u in uniques), dtype=bool, count=len(uniques))
            self._isin[key] = hit[codes] if self.n else np.zeros(0, bool)
        return self._isin[key]

    def startswith(self, name: str, prefixes) -> np.ndarray:
        codes, uniques = self.factor(name)
        hit = np.array([str(u).startswith(tuple(prefixes)) for u in uniques], dtype=bool)
        return hit[codes] if self.n else np.zeros(0, bool)

    @cached_property
    def code(self) -> np.ndarray:
        codes, uniques = self.factor("hcpcs_code")
        return uniques[codes]

    @property
    def code_factor(self) -> tuple[np.ndarray, np.ndarray]:
        """(codes, distinct codes) of the lines' HCPCS codes (the validated column's
        categories: a code no line uses any more costs one lookup, nothing else)."""
        return self.factor("hcpcs_code")

    def per_code(self, mapping: pd.Series, default) -> np.ndarray:
        """Look a per-code value up for every line via the unique codes."""
        codes, uniques = self.code_factor
        return self._lookup(mapping, uniques, default)[codes] if self.n else np.zeros(0, dtype=object)

    def per_ndc(self, values: pd.Series, default) -> np.ndarray:
        """Look a per-NDC value up for every line via the distinct NDCs."""
        codes, uniques = self.factor("ndc")
        if not self.n:
            return np.zeros(0, dtype=object)
        return self._lookup(values, uniques, default).astype(object)[codes]

    def _lookup(self, mapping: pd.Series, keys, default) -> np.ndarray:
        """`mapping`'s value of each of `keys` (distinct values), `default` where it has none
        or a missing one. `mapping` is a Series the Reference keeps (a `derived` fact, a
        cached property, `hcpcs_column`): its index positions and its values are read once
        per process, keyed by its identity (the cache holds it, so the identity is not
        reused; a test pins that scoring again adds no entry)."""
        pos = self.ref.positions(mapping.index, keys)
        _, vals = self.ref.derived(("values", id(mapping)), lambda: (mapping, mapping.to_numpy()))
        if not len(vals):
            return np.full(len(keys), default, dtype=object)
        got = vals[np.maximum(pos, 0)]
        return np.where((pos < 0) | pd.isna(got), default, got)

    @cached_property
    def ndc_code(self) -> np.ndarray:
        """A HCPCS code the line's NDC is a product of ('' when unknown to the crosswalk): the
        billed code where the crosswalk lists the NDC under it, else the first listed."""
        first = self.per_ndc(self.ref.ndc_codes(), "")
        return np.where(self._pair_row >= 0, self.code, first)

    @cached_property
    def _pair_row(self) -> np.ndarray:
        """Row of `ref.ndc_code_pairs` for the line's (NDC, billed code), -1 when not listed;
        looked up once per distinct pair."""
        if not self.n:
            return np.zeros(0, dtype=np.int64)
        ndc_codes, ndc_u = self.factor("ndc")
        code_codes, code_u = self.code_factor
        width = len(code_u) + 1
        inverse, distinct = pd.factorize(ndc_codes.astype(np.int64) * width + code_codes)
        rows = self.ref.ndc_code_rows
        code_u = np.asarray(code_u, dtype=object)
        found = (rows.get((ndc_u[d // width], code_u[d % width]), -1) for d in distinct.tolist())
        return np.fromiter(found, dtype=np.int64, count=len(distinct))[inverse]

    @cached_property
    def units_per_item(self) -> np.ndarray:
        """Billing units of the billed code in one item of the line's NDC (crosswalk), NaN
        when the crosswalk does not list the pair."""
        per_item = self.ref.ndc_code_pairs["units_per_item"].to_numpy(dtype=float)
        row = self._pair_row
        return np.where(row >= 0, per_item[np.maximum(row, 0)] if len(per_item) else np.nan, np.nan)

    def _product_facts(self, attribute: str, default) -> np.ndarray:
        def build() -> pd.Series:
            facts = {
                p.ndc: getattr(p, attribute)
                for pol in self.pack.policies
                for p in pol.products
                if getattr(p, attribute) is not None
            }
            return pd.Series(facts, dtype=object)

        return self.per_ndc(self.ref.derived(("product", self.pack.sha256, attribute), build), default)

    @cached_property
    def container(self) -> np.ndarray:
        """`single_dose` / `multiple_dose` for NDCs a policy lists as products, else ''."""
        return self._product_facts("container", "")

    @cached_property
    def mg_per_item(self) -> np.ndarray:
        """Milligrams in one item of the line's NDC, for NDCs a policy lists with a strength."""
        return self._product_facts("mg_per_item", np.nan).astype(float)

    @cached_property
    def drug(self) -> np.ndarray:
        """Drug policy of each line ('' for none): NDC first, then description, then code."""
        policies = [p for p in self.pack.policies if p.is_drug]
        names = np.array(["", *[p.name for p in policies]], dtype=object)
        ndc_codes, ndc_u = self.factor("ndc")
        pairs = self.ref.ndc_code_pairs
        desc_codes, desc_u = self.factor("drug_description")
        by = {k: np.zeros(self.n, dtype=np.int16) for k in ("ndc", "desc", "code")}
        for k, p in enumerate(policies, start=1):
            # an NDC the crosswalk lists under any of the policy's codes is its drug
            ndcs = self.ref.derived(
                ("policy_ndcs", self.pack.sha256, p.name),
                lambda p=p: (
                    frozenset(pairs.loc[pairs["hcpcs_code"].isin(p.match_codes), "ndc"])
                    | frozenset(p.match_ndcs)
                ),
            )
            hit_ndc = np.fromiter((u in ndcs for u in ndc_u), dtype=bool, count=len(ndc_u))
            self._first(by["ndc"], hit_ndc[ndc_codes], k)
            if p.match_description:
                rx = re.compile(r"\b(?:" + "|".join(map(re.escape, p.match_description)) + r")\b", re.I)
                hit_desc = np.array([bool(rx.search(str(u))) for u in desc_u], dtype=bool)
                self._first(by["desc"], hit_desc[desc_codes], k)
            self._first(by["code"], self.isin("hcpcs_code", p.match_codes), k)
        best = np.where(by["ndc"] > 0, by["ndc"], np.where(by["desc"] > 0, by["desc"], by["code"]))
        return names[best]

    @staticmethod
    def _first(target: np.ndarray, hit: np.ndarray, k: int) -> None:
        """Mark policy k where it matches and no earlier policy did."""
        target[hit & (target == 0)] = k

    @cached_property
    def unit_mg(self) -> np.ndarray:
        return self.per_code(self.ref.hcpcs_column("unit_mg"), np.nan).astype(float)

    def _drug_codes(self) -> pd.Series:
        drug_codes = set(self.ref.crosswalk["hcpcs_code"]) | set(self.pack.noc_codes)
        for p in self.pack.policies:
            drug_codes |= set(p.match_codes) | {p.document_code.code, p.official_code.code} - {None}
        return pd.Series(True, index=sorted(drug_codes))

    @cached_property
    def is_drug_line(self) -> np.ndarray:
        known = self.ref.derived(("drug_codes", self.pack.sha256), self._drug_codes)
        listed = self.per_code(known, False).astype(bool)
        first = np.array([c[:1] == "J" for c in self.code_factor[1]], dtype=bool)
        return listed | (first[self.code_factor[0]] if self.n else np.zeros(0, bool))

    @cached_property
    def claim_codes(self) -> np.ndarray:
        return self.factor("claim_id")[0]

    @cached_property
    def patient_codes(self) -> np.ndarray:
        return self.factor("patient_id")[0]

    @property
    def service_day(self) -> np.ndarray:
        return self.frame.days("service_date")

    @property
    def submission_day(self) -> np.ndarray:
        return self.frame.days("submission_date")
