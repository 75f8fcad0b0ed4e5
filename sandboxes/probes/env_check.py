"""Probe: does the sandbox's process see NAME=VALUE? Prints one JSON line (the value is not echoed)."""

import json
import os
import sys

name, expected = sys.argv[1], sys.argv[2]
seen = os.environ.get(name)
ok = seen == expected
print(
    json.dumps(
        {
            "ok": ok,
            "name": name,
            "error": None if ok else f"{name} is {'unset' if seen is None else 'different'} inside the sandbox",
        }
    )
)
sys.exit(0 if ok else 1)
