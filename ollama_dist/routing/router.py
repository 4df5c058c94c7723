"""The router's public names, where scripts import them from (`from ollama_dist.routing.router
import Router, Decision`). The code lives by concern: rules.py (vocabulary, hard rules),
score.py (the soft score), decision.py (Decision, the combination)."""

from ollama_dist.ledger.store import TaskHistory
from ollama_dist.routing.decision import Decision, Reviewer, Router
from ollama_dist.routing.rules import Target, default_vocabulary, estimate_tokens

__all__ = ["Decision", "Reviewer", "Router", "TaskHistory", "Target", "default_vocabulary", "estimate_tokens"]
