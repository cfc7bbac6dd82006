"""The README's links into the repository (docs/, examples/) lead to files that are there:
the site's strict build checks the links of docs/, and this those of the README, which the
site does not build."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_every_relative_link_of_the_readme_leads_to_a_file() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if "://" not in link and not link.startswith("#")]
    assert relative, "the README links into docs/"
    missing = [link for link in relative if not (ROOT / link.partition("#")[0]).is_file()]
    assert missing == []


def test_the_readme_anchors_name_its_own_headings() -> None:
    text = (ROOT / "README.md").read_text()
    headings = {
        re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    }
    anchors = set(re.findall(r"\]\(#([\w-]+)\)", text))
    assert anchors <= headings
