"""A long-lived bot process for tests: questions on stdin, one JSON answer per line on stdout.

Built like every casebot process (settings from the environment, services
from the composition root), so several of them beside an indexer behave like
several running bots sharing one Chroma server.
"""

from __future__ import annotations

import json
import sys

from bot.app import build_services
from bot.settings import load_settings
from index.errors import CasebotError


def main() -> int:
    services = build_services(load_settings())
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        try:
            answer = services.case.ask(line.strip())
            reply = {"text": answer.text, "refused": answer.refused, "urls": [c.url for c in answer.citations]}
        except CasebotError as error:
            reply = {"error": str(error)}
        print(json.dumps(reply, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
