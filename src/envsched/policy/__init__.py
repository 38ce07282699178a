"""Site policy: model, schema validation, loading, CHOS import."""
from .load import load_policy, parse_policy_text
from .model import Environment, Mount, Policy, Site

__all__ = ["load_policy", "parse_policy_text", "Environment", "Mount", "Policy", "Site"]
