"""Print the project's runtime dependencies from pyproject.toml, one per line, minus the ones named.

Used by the Dockerfiles to install dependencies in a layer of their own, before the source is copied,
so editing code does not reinstall them. `--exclude torch` keeps the base image's CUDA build (worker)
or leaves torch out altogether (API image: the API, the migration and Flower never import it).
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path, nargs="?", default=Path("pyproject.toml"))
    parser.add_argument("--exclude", action="append", default=[], help="distribution name to leave out")
    args = parser.parse_args()
    excluded = {name.lower() for name in args.exclude}
    for requirement in tomllib.loads(args.pyproject.read_text())["project"]["dependencies"]:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()
        if name not in excluded:
            print(requirement)


if __name__ == "__main__":
    main()
