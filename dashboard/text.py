"""User-controlled strings as plain text inside Streamlit markdown and HTML.

Job ids from the address bar, run names and class names from results files, error messages that
quote a user's value: none of them may turn into a link, an image, HTML, emphasis, a colour or
icon directive or LaTeX. Pure functions (no Streamlit), one per context:

    md(s)    inside running markdown text: every ASCII punctuation character backslash-escaped
             (CommonMark renders an escaped punctuation character as itself, and an escape also
             breaks GFM's bare-URL autolinks such as http://x or www.x.y)
    code(s)  as an inline code span whose fence is longer than any backtick run in s, so nothing
             inside is interpreted and the text reads verbatim (ids, error messages)
    html(s)  inside st.html: HTML-escaped, quotes included
"""
from __future__ import annotations

import html as _html
import re

_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
_TICKS = re.compile(r"`+")


def _one_line(s) -> str:
    return " ".join(str(s).splitlines())  # a newline could start a heading, a list or a new block


def md(s) -> str:
    return _PUNCT.sub(r"\\\1", _one_line(s))


def code(s) -> str:
    s = _one_line(s)
    if not s.strip():
        return "(empty)"
    runs = [len(m) for m in _TICKS.findall(s)]
    if not runs:
        return f"`{s}`"
    fence = "`" * (max(runs) + 1)
    return f"{fence} {s} {fence}"  # the spaces let s start or end with a backtick


def html(s) -> str:
    return _html.escape(_one_line(s), quote=True)
