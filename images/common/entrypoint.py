"""Model-container entrypoint: the profile's environment in, vLLM as PID 1 out.

It builds vLLM's argument list with ``vllm_argv`` (copied next to this file from
``orchestrator/vllm_argv.py``), prints it as one JSON line on stderr, drops the keys only this
project reads from the environment and ``execve``s vLLM, so vLLM receives the stop signal
directly. Nothing passes through a shell.

An image whose base needs a sourced environment (the XPU base's oneAPI ``setvars.sh``) records it
at build time in ``/opt/model-slot/base-env.json`` (``{"before": {...}, "after": {...}}``); every
key the sourcing changed is applied unless the container's environment overrides it.

``MODEL_SLOT_ENTRYPOINT_DRY_RUN=1`` prints the same JSON line on stdout and exits 0 instead of
exec'ing: the image tests use it to check the argv without starting vLLM.

Any error exits 2 with one line that names the problem.
"""

from __future__ import annotations

import json
import os
import sys

DRY_RUN_KEY = "MODEL_SLOT_ENTRYPOINT_DRY_RUN"
BASE_ENV_FILE = "/opt/model-slot/base-env.json"


def _with_base_env(env: dict[str, str], path: str) -> dict[str, str]:
    """Apply the build-time captured base environment; explicit container values win."""
    try:
        with open(path, encoding="utf-8") as handle:
            recorded = json.load(handle)
    except FileNotFoundError:
        return env
    before: dict[str, str] = recorded.get("before", {})
    after: dict[str, str] = recorded.get("after", {})
    merged = dict(env)
    for key, value in after.items():
        if env.get(key) == before.get(key):
            merged[key] = value
    return merged


def _fail(message: str) -> int:
    print(f"model-slot entrypoint: {message}", file=sys.stderr, flush=True)
    return 2


def main() -> int:
    try:
        import vllm_argv  # noqa: PLC0415 - a missing copy must end in a clear message
    except ImportError as exc:
        return _fail(f"cannot import vllm_argv next to the entrypoint ({exc})")

    try:
        env = _with_base_env(dict(os.environ), BASE_ENV_FILE)
    except (OSError, ValueError, AttributeError) as exc:
        return _fail(f"cannot read {BASE_ENV_FILE}: {exc}")
    dry_run = env.pop(DRY_RUN_KEY, "") == "1"
    try:
        argv = vllm_argv.build_command(env)
        child_env = vllm_argv.model_environment(env)
    except ValueError as exc:
        return _fail(str(exc))

    line = json.dumps({"event": "exec", "argv": argv}, separators=(",", ":"))
    if dry_run:
        print(line, flush=True)
        return 0
    print(line, file=sys.stderr, flush=True)
    try:
        os.execvpe(argv[0], argv, child_env)  # noqa: S606 - exec, no shell: vLLM becomes PID 1
    except OSError as exc:
        return _fail(f"cannot exec {argv[0]!r}: {exc}")
    return 0  # not reached: execvpe replaces this process


if __name__ == "__main__":
    sys.exit(main())
