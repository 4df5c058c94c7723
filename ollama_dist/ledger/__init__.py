"""ledger: the SQLite record of every attempt (store), its schema steps (migrations), prices.

The public names are re-exported here: `from ollama_dist.ledger import Ledger, Attempt`.
"""

from ollama_dist.ledger.store import Attempt, CachedAnswer, Ledger, TaskHistory, open_reader, read_only_uri

__all__ = ["Attempt", "CachedAnswer", "Ledger", "TaskHistory", "open_reader", "read_only_uri"]
