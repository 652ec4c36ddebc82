"""The templates as text: a `{# ... #}` comment is one line in Django (one that goes on is shown to the reader as it
is); a longer one needs `{% comment %}`."""

import re

from tests.conftest import REPO

OPEN_COMMENT = re.compile(r"\{#(?!.*#\})")


def test_no_one_line_comment_runs_past_its_line():
    unclosed = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "templates").rglob("*.html"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if OPEN_COMMENT.search(line)
    ]
    assert unclosed == []


def test_the_check_finds_an_unclosed_comment():
    assert OPEN_COMMENT.search("{# the pages of a list: `page`, and")
    assert not OPEN_COMMENT.search("{# one line #} <nav>")
