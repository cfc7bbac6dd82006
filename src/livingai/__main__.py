"""`python -m livingai`: the livingai command line. Its libraries come with the `cli`
extra; without them this says which one to install, in one line.

The documentation is in docs/ of livingai's repository (docs/index.md; the command line
in docs/cli.md), built into a site by `mkdocs serve` or `mkdocs build` from the
repository's root after `pip install -e ".[docs]"`; `livingai --help` says so too."""

from __future__ import annotations

import sys

# What `pip install "livingai[cli]"` brings: click, rich and what rich needs.
CLI_LIBRARIES = ("click", "rich", "markdown_it", "mdurl", "pygments")


def main() -> None:
    try:
        from .cli import main as cli_main
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in CLI_LIBRARIES:
            raise
        from . import MissingExtraError

        error = MissingExtraError(f'{missing!r} is not installed; run: pip install "livingai[cli]"')
        print(f"livingai: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    cli_main()


if __name__ == "__main__":
    main()
