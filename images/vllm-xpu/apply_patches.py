"""Apply every ``patches/*.patch`` to the installed vLLM, all-or-nothing. Standard library only.

Usage: ``python apply_patches.py PATCH_DIR``.

vLLM's install directory is found without importing it (``find_spec``), so a broken import cannot
hide a patch failure. Each patch is a unified diff with ``a/vllm/...``/``b/vllm/...`` paths (as
``patch -p1`` or ``git apply`` take it), applied relative to the directory that holds ``vllm/``.

Every hunk of every patch is first checked against the file as it will be at that point (a dry
run, in memory); only when all of them fit is anything written. A hunk fits when its context and
removed lines match exactly, at its stated line or nearby (offset, never fuzz). A patch that does
not fit fails the build, naming the patch, the file and the hunk.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
MAX_OFFSET = 200


class PatchError(Exception):
    pass


@dataclass
class Hunk:
    old_start: int
    old: list[str]
    new: list[str]
    header: str


@dataclass
class FilePatch:
    path: str
    hunks: list[Hunk]


def _strip_prefix(name: str) -> str:
    name = name.split("\t", 1)[0].strip()
    if name.startswith(("a/", "b/")):
        return name[2:]
    return name


def parse(text: str, source: str) -> list[FilePatch]:
    files: list[FilePatch] = []
    lines = text.splitlines(keepends=True)
    index = 0
    current: FilePatch | None = None
    while index < len(lines):
        line = lines[index]
        if (
            line.startswith("--- ")
            and index + 1 < len(lines)
            and lines[index + 1].startswith("+++ ")
        ):
            target = _strip_prefix(lines[index + 1][4:])
            if target == "/dev/null":
                raise PatchError(f"{source}: deleting files is not supported")
            current = FilePatch(target, [])
            files.append(current)
            index += 2
            continue
        match = _HUNK.match(line)
        if match:
            if current is None:
                raise PatchError(f"{source}: hunk before any file header")
            old_count = int(match[2]) if match[2] is not None else 1
            new_count = int(match[4]) if match[4] is not None else 1
            hunk = Hunk(int(match[1]), [], [], line.strip())
            index += 1
            while index < len(lines) and (len(hunk.old) < old_count or len(hunk.new) < new_count):
                body = lines[index]
                if body.startswith("\\"):
                    index += 1
                    continue
                tag, content = body[:1], body[1:]
                if tag == " ":
                    hunk.old.append(content)
                    hunk.new.append(content)
                elif tag == "-":
                    hunk.old.append(content)
                elif tag == "+":
                    hunk.new.append(content)
                elif body in ("\n", "\r\n"):  # an empty context line whose space was stripped
                    hunk.old.append(body)
                    hunk.new.append(body)
                else:
                    raise PatchError(f"{source}: malformed hunk line {body!r} in {hunk.header}")
                index += 1
            if len(hunk.old) != old_count or len(hunk.new) != new_count:
                raise PatchError(f"{source}: hunk {hunk.header} is truncated")
            current.hunks.append(hunk)
            continue
        index += 1
    if not files:
        raise PatchError(f"{source}: no file in this patch")
    return files


def apply_hunks(lines: list[str], patch: FilePatch, source: str) -> list[str]:
    result = list(lines)
    shift = 0
    for hunk in patch.hunks:
        want = max(hunk.old_start - 1 + shift, 0)
        for offset in range(MAX_OFFSET + 1):
            found = None
            for start in (want - offset, want + offset):
                if start >= 0 and result[start : start + len(hunk.old)] == hunk.old:
                    found = start
                    break
            if found is not None:
                break
        else:
            raise PatchError(
                f"{source}: {patch.path}: hunk {hunk.header} does not apply "
                "(the installed vLLM differs from the version this patch targets)"
            )
        result[found : found + len(hunk.old)] = hunk.new
        shift += len(hunk.new) - len(hunk.old)
    return result


def vllm_root() -> Path:
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        raise PatchError("vLLM is not installed in this interpreter")
    return Path(next(iter(spec.submodule_search_locations))).parent


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: apply_patches.py PATCH_DIR", file=sys.stderr)
        return 2
    patches = sorted(Path(argv[1]).glob("*.patch"))
    try:
        root = vllm_root()
        print(f"apply_patches: vLLM at {root / 'vllm'}; {len(patches)} patch(es)", flush=True)
        staged: dict[Path, list[str]] = {}
        for patch_file in patches:
            for file_patch in parse(patch_file.read_text(encoding="utf-8"), patch_file.name):
                target = root / file_patch.path
                if not target.is_file() and target not in staged:
                    raise PatchError(f"{patch_file.name}: {file_patch.path} does not exist")
                before = staged.get(target)
                if before is None:
                    before = target.read_text(encoding="utf-8").splitlines(keepends=True)
                staged[target] = apply_hunks(before, file_patch, patch_file.name)
            print(f"apply_patches: dry run ok: {patch_file.name}", flush=True)
        for target, lines in staged.items():
            target.write_text("".join(lines), encoding="utf-8")
            for cached in target.parent.glob(f"__pycache__/{target.stem}.*.pyc"):
                cached.unlink()
            print(f"apply_patches: patched {target.relative_to(root)}", flush=True)
    except PatchError as exc:
        print(f"apply_patches: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
