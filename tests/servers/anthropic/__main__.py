"""``python -m tests.servers.anthropic --port 8765 --key test-key``: the fake Anthropic API by hand."""

import sys

from tests.servers.anthropic.server import main

sys.exit(main())
