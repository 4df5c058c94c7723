"""routing: which lane a job goes to (rules and score, the second opinion, exemplars, learning).

The public names are re-exported here: `from ollama_dist.routing import Decision, Router`.
"""

from ollama_dist.routing.router import Decision, Router, TaskHistory, estimate_tokens

__all__ = ["Decision", "Router", "TaskHistory", "estimate_tokens"]
