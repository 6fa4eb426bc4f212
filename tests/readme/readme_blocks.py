"""The shell examples of a Markdown file, as the README's test runs them.

Every fenced ```bash block is an example. A block that cannot run in the test (it needs Docker or
a GPU, or it is the test command itself) is preceded by a comment saying so, and the reason must
be given, so skipping is a visible decision in the README's source and not a silent default:

    <!-- readme-test: skip (needs a Docker engine) -->

A block the reader runs in a second terminal (`rmscore up`, which runs until Ctrl-C) is marked
`background`: the test starts it in the background and goes on once the API answers `/readyz`.

    <!-- readme-test: background (the reader's second terminal) -->
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^\s*```(\S*)\s*$")  # fences may be indented (a block inside a list item)
MARK = re.compile(r"^\s*<!--\s*readme-test:\s*(?P<what>skip|background)\s*\((?P<why>[^)]*)\)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None  # the reason it is not run, or None
    background: bool = False  # runs in the reader's second terminal: started, then the API awaited

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def extract(path: Path) -> list[Block]:
    """The bash blocks of `path`, in order, each with the skip reason written above it (if any)."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        end = start + 1
        while end < len(lines) and not FENCE.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{path.name}:{start + 1}: code block never closed")
        if lang in ("bash", "sh", "shell", "console"):
            above = lines[start - 1] if start else ""
            mark = MARK.match(above)
            if mark and not mark.group("why").strip():
                raise ValueError(f"{path.name}:{start + 1}: a marked example must say why")
            skip = mark.group("why").strip() if mark and mark.group("what") == "skip" else None
            background = bool(mark and mark.group("what") == "background")
            code = textwrap.dedent("\n".join(lines[start + 1 : end]))
            blocks.append(Block(path, start + 1, code, skip, background))
        i = end + 1
    return blocks


def script(blocks: list[Block], *, replace: dict[str, str], ready_url: str) -> str:
    """One bash script running the blocks in order, as a reader typing them into one terminal would.

    Each block is announced on stderr, so a failure names the README line it came from; `replace`
    maps literal text (ports a parallel test run cannot share) to what this run uses. A background
    block runs in a subshell with its output in `background-N.log`; the script then waits (up to
    15 minutes, as a reader would watch for "ready") until `ready_url` answers 200.
    """
    parts = [
        "set -euo pipefail",
        # What a block started in the background (`rmscore up &`) is stopped when the script ends.
        "trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT",
    ]
    for b in blocks:
        code = b.code
        for old, new in replace.items():
            code = code.replace(old, new)
        parts.append(f"echo '>>> {b.where}' >&2")
        if b.background:
            log = f"background-{b.line}.log"
            parts.append(f"( {code}\n) > {log} 2>&1 &")
            parts.append(
                f"for _ in $(seq 900); do command curl -sf {ready_url} >/dev/null && break; sleep 1; done; "
                f"command curl -sf {ready_url} >/dev/null || {{ cat {log} >&2; exit 1; }}"
            )
        else:
            parts.append(code)
    parts.append("echo '>>> all examples ran' >&2")
    return "\n".join(parts) + "\n"
