"""Vectorized evaluation of a rule pack over a whole claim-line table.

Each rule's check kind (`rules/kinds.py`) is one function over whole columns; a rule's
`applies_to` selectors pick its lines; cross-line kinds (duplicates, days since the previous
dose, daily maximum) also read earlier lines when a chunk is scored after others. The
result is a boolean hit matrix with one column per rule id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from denial_model.memo import by_identity
from denial_model.reference import Reference, load_reference
from denial_model.rules.context import Context
from denial_model.rules.kinds import KINDS
from denial_model.rules.pack import CATEGORIES, Rule, RulePack, load_pack
from denial_model.table import ClaimFrame, concat_lines

__all__ = ["RuleResult", "applies_mask", "evaluate", "per_rules"]


# ---------------------------------------------------------------------------- selectors


def applies_mask(rule: Rule, ctx: Context) -> np.ndarray:
    """Lines a rule applies to: every selector of `applies_to` must hold."""
    a = rule.applies_to
    m = np.ones(ctx.n, dtype=bool)
    if "drugs" in a:
        m &= ctx.isin("drug", a["drugs"])
    if "not_drugs" in a:
        m &= ~ctx.isin("drug", a["not_drugs"])
    if "codes" in a:
        m &= ctx.isin("hcpcs_code", a["codes"])
    if "not_codes" in a:
        m &= ~ctx.isin("hcpcs_code", a["not_codes"])
    if "code_prefixes" in a:
        m &= ctx.startswith("hcpcs_code", a["code_prefixes"])
    if a.get("drug_lines"):
        m &= ctx.is_drug_line
    if "payer_types" in a:
        m &= ctx.isin("payer_type", a["payer_types"])
    if "service_from" in a:
        m &= ctx.frame.values("service_date") >= np.datetime64(a["service_from"])
    if "service_to" in a:
        m &= ctx.frame.values("service_date") <= np.datetime64(a["service_to"])
    if "modifiers_any_of" in a:
        m &= ctx.frame.has_modifier(a["modifiers_any_of"])
    if "diagnosis_any_of" in a:
        m &= ctx.frame.diagnosis_matches(a["diagnosis_any_of"])
    if "place_of_service" in a:
        m &= ctx.isin("place_of_service", a["place_of_service"])
    if "containers" in a:
        m &= np.isin(ctx.container, a["containers"])
    return m


# ---------------------------------------------------------------------------- results

# A pack's rules never change once loaded (a tuple of frozen rules), and scoring a claim
# reads the same facts of them (ids, categories, severities) many times: built once per
# rule tuple, kept with the tuple itself (so its identity is not reused).
MAX_RULE_FACTS = 256
_RULE_FACTS: dict = {}


def per_rules(rules: tuple[Rule, ...], name: str, build: Callable[[tuple[Rule, ...]], object]):
    """`build(rules)`, computed once per rule tuple and `name` (a list is built every time:
    it could change). Arrays come back read-only: they are shared."""
    if not isinstance(rules, tuple):
        return build(rules)
    return by_identity(_RULE_FACTS, rules, name, lambda: _shared(build(rules)), MAX_RULE_FACTS)


def _shared(value: object) -> object:
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    return value


def _category_columns(rules: tuple[Rule, ...]) -> list[tuple[int, list[int]]]:
    return [
        (k, cols)
        for k, cat in enumerate(CATEGORIES)
        if (cols := [i for i, r in enumerate(rules) if r.category == cat])
    ]


@dataclass
class RuleResult:
    """Hit matrix of a pack over a table, with per-line summaries built from it."""

    hits: np.ndarray  # (n, R) bool
    rules: tuple[Rule, ...]
    drug: np.ndarray
    # per line, the last service day (days since 1970) on which a later line can still be
    # compared with it by a cross-line rule; -1 where no cross-line rule applies to it
    relevant_until: np.ndarray | None = None
    drug_line: np.ndarray | None = None  # (n,) bool: the line bills a drug (Context.is_drug_line)

    @property
    def ids(self) -> tuple[str, ...]:
        return per_rules(self.rules, "ids", lambda rules: tuple(r.id for r in rules))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.hits, columns=self.ids)

    @cached_property
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(line, rule index) of every hit, by line and then rule: found once, read by the
        reasons, the fixes and the corrected claims."""
        return np.nonzero(self.hits)

    def take(self, rows: np.ndarray) -> RuleResult:
        """The result of the lines `rows` (positions), in that order."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return RuleResult(
            hits=self.hits[rows],
            rules=self.rules,
            drug=self.drug[rows],
            relevant_until=pick(self.relevant_until),
            drug_line=pick(self.drug_line),
        )

    @cached_property
    def _combos(self) -> tuple[np.ndarray, np.ndarray]:
        """(inverse, unique rows) of the hit matrix: per-line strings are built per combo.

        Each row's hits are packed into 64-bit words and the words factorized (hashing, no
        sort), so this stays linear in the lines."""
        n, r = self.hits.shape
        if n == 0:
            return np.zeros(0, np.intp), np.zeros((0, r), bool)
        words = -(-r // 64)
        packed = np.zeros((n, words * 8), dtype=np.uint8)
        packed[:, : -(-r // 8)] = np.packbits(self.hits, axis=1)
        packed = packed.view(np.uint64)
        inv = np.zeros(n, dtype=np.intp)
        for k in range(words):
            codes, uniq = pd.factorize(packed[:, k])
            inv, _ = pd.factorize(inv * len(uniq) + codes)
        inv = np.asarray(inv, dtype=np.intp)
        # factorize numbers values by first appearance: a row is a combo's first where its
        # code exceeds every code before it
        first = np.flatnonzero(np.r_[True, inv[1:] > np.maximum.accumulate(inv)[:-1]])
        return inv, self.hits[first]

    def per_line_codes(self, text: Callable[[list[Rule]], str]) -> tuple[np.ndarray, np.ndarray]:
        """(code per line, distinct strings): `text` of each line's fired rules, built once per
        distinct combination of hits."""
        inv, combos = self._combos
        strings = np.array(
            [text([r for r, h in zip(self.rules, row, strict=True) if h]) for row in combos],
            dtype=object,
        )
        return inv, strings

    def _per_line(self, text: Callable[[list[Rule]], str]) -> np.ndarray:
        inv, strings = self.per_line_codes(text)
        return strings[inv] if len(inv) else np.zeros(0, dtype=object)

    @staticmethod
    def hit_ids(rules: list[Rule]) -> str:
        return ";".join(r.id for r in rules)

    @cached_property
    def rule_hits(self) -> np.ndarray:
        """Rule ids that fired on each line, ';'-separated ('' for none)."""
        return self._per_line(self.hit_ids)

    @cached_property
    def carcs(self) -> np.ndarray:
        """CARC codes the fired rules imply, deny-severity first, ';'-separated."""

        def carc(rs: list[Rule]) -> str:
            ordered = sorted(rs, key=lambda r: r.severity != "deny")
            return ";".join(dict.fromkeys(r.carc for r in ordered))

        return self._per_line(carc)

    @cached_property
    def categories(self) -> np.ndarray:
        """(n, len(CATEGORIES)) bool: any rule of the category fired on the line."""
        out = np.zeros((len(self.hits), len(CATEGORIES)), dtype=bool)
        for k, cols in per_rules(self.rules, "category_columns", _category_columns):
            out[:, k] = self.hits[:, cols].any(axis=1)
        return out

    def category_hits(self) -> pd.DataFrame:
        """`categories` as a frame, one column per category."""
        return pd.DataFrame(self.categories, columns=list(CATEGORIES))

    def deny_hit(self) -> np.ndarray:
        deny = per_rules(
            self.rules, "deny", lambda rules: np.array([r.severity == "deny" for r in rules], bool)
        )
        return self.hits[:, deny].any(axis=1)


def evaluate(
    lines: pd.DataFrame | ClaimFrame,
    pack: RulePack | None = None,
    ref: Reference | None = None,
    earlier: pd.DataFrame | None = None,
) -> RuleResult:
    """Evaluate every rule of `pack` over a validated table, all lines at once.

    `earlier`: validated lines before these (a previous chunk's look-back) that the
    cross-line kinds read; they get no result of their own, and the other kinds never see
    them."""
    pack = pack or load_pack()
    ref = ref or load_reference()
    frame = lines if isinstance(lines, ClaimFrame) else ClaimFrame(lines)
    ctx = Context(frame, pack, ref)
    n_earlier = 0 if earlier is None else len(earlier)
    wide = ctx
    if n_earlier and frame.n and any(KINDS[r.kind].cross_line for r in pack.rules):
        wide = Context(ClaimFrame(concat_lines([earlier, frame.df])), pack, ref)
    hits = np.zeros((frame.n, len(pack.rules)), dtype=bool, order="F")  # column writes stay contiguous
    until = np.full(frame.n, -1, dtype=np.int64)
    masks: dict[tuple[str, bool], tuple[np.ndarray, bool]] = {}  # many rules share their selectors
    for j, rule in enumerate(pack.rules):
        kind = KINDS[rule.kind]
        c = wide if kind.cross_line else ctx
        key = (rule.selector, c is wide)
        if key not in masks:
            m = applies_mask(rule, c)
            m.flags.writeable = False
            masks[key] = m, bool(m.any())
        mask, applies = masks[key]
        if applies:
            hit = mask & kind.check(c, rule.params, mask)
            hits[:, j] = hit[c.n - frame.n :]
            if kind.lookback is not None:
                reach = ctx.service_day + kind.lookback(rule.params)
                until = np.where(mask[c.n - frame.n :], np.maximum(until, reach), until)
    return RuleResult(
        hits=hits, rules=pack.rules, drug=ctx.drug, relevant_until=until, drug_line=ctx.is_drug_line
    )
