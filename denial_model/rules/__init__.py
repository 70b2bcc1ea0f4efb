"""Rules as data, engine as code: the YAML pack (`pack`), its vectorized evaluation
(`engine`) and its review against the official code set (`verify`)."""

from denial_model.rules.engine import RuleResult, evaluate
from denial_model.rules.pack import CATEGORIES, PackError, Rule, RulePack, load_pack

__all__ = ["CATEGORIES", "PackError", "Rule", "RulePack", "RuleResult", "evaluate", "load_pack"]
