"""Record what sourcing a shell environment script changes, for the entrypoint to apply.

Usage: ``python capture_env.py SCRIPT OUTPUT.json``. When SCRIPT does not exist nothing is
written. The script is sourced once, at build time, by bash with an argument list; the
container later starts without any shell (see images/common/entrypoint.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _parse(blob: bytes) -> dict[str, str]:
    pairs = (item.decode("utf-8", "replace").partition("=") for item in blob.split(b"\0") if item)
    return {key: value for key, _, value in pairs if key}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: capture_env.py SCRIPT OUTPUT.json", file=sys.stderr)
        return 2
    script, output = Path(argv[1]), Path(argv[2])
    if not script.is_file():
        print(f"capture_env: {script} not present, nothing to record", flush=True)
        return 0
    before = dict(os.environ)
    sourced = subprocess.run(
        ["bash", "-c", 'script="$1"; shift; . "$script" >/dev/null 2>&1; env -0', "-", str(script)],
        capture_output=True,
        check=True,
    )
    after = _parse(sourced.stdout)
    changed = {key: value for key, value in after.items() if before.get(key) != value}
    changed.pop("_", None)
    for shell_own in ("SHLVL", "PWD", "OLDPWD"):
        changed.pop(shell_own, None)
    previous = {key: before[key] for key in changed if key in before}
    output.write_text(json.dumps({"before": previous, "after": changed}, indent=1, sort_keys=True))
    print(f"capture_env: recorded {len(changed)} variable(s) from {script}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
