"""`rmscore sample`: the sample data that ships with rmscore, so a first job needs no data set."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import typer

SAMPLE = "data/demo_pairs.jsonl"  # 24 pairwise lines, the same `rmscore demo` scores


def sample_lines(kind: Literal["pairwise", "chat"]) -> list[str]:
    """The bundled pairs as JSONL lines; as chats, each pair's chosen conversation, then its rejected one."""
    text = resources.files("rmscore").joinpath(SAMPLE).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if kind == "pairwise":
        return lines
    out: list[str] = []
    for i, ln in enumerate(lines, 1):
        pair = json.loads(ln)
        for side in ("chosen", "rejected"):
            messages = [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": pair[side]}]
            custom_id = f"{pair.get('custom_id') or i}-{side}"
            out.append(json.dumps({"custom_id": custom_id, "messages": messages}, ensure_ascii=False))
    return out


def sample(
    kind: Annotated[str, typer.Option(help="pairwise (prompt, chosen, rejected) or chat (messages).")] = "pairwise",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here [default: stdout].")] = None,
) -> None:
    """Print the sample data that ships with rmscore (24 pairs) as JSONL, to try a first job."""
    if kind not in ("pairwise", "chat"):
        raise typer.BadParameter("kind must be pairwise or chat", param_hint="--kind")
    text = "".join(ln + "\n" for ln in sample_lines("chat" if kind == "chat" else "pairwise"))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def register(app: typer.Typer) -> None:
    app.command("sample")(sample)
