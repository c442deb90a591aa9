"""User-controlled strings as plain text inside Streamlit markdown and HTML.

Job ids from the address bar, run names, layer and class names from results files, error messages
that quote a user's value: none of them may turn into a link, an image, HTML, emphasis, a colour or
icon directive or LaTeX. Pure functions (no Streamlit), one per context:

    md(s)    inside running markdown text. Ordinary prose reads unchanged (an error message such
             as "forget.classes [12] do not exist: ..." stays as it is); what would start markup is
             neutralised. Backslash escapes (CommonMark shows an escaped punctuation character as
             itself) for what the parser reads:
               \\ ` * _ ~ $ | # <           emphasis, code, math, tables, headings, HTML, <...> autolinks
               "](" and "]["               link and image syntax ("[12]" alone is harmless)
               a leading "-", "+", ">", "1."  lists and quotes
             and an invisible WORD JOINER (U+2060) where GFM and Streamlit find patterns in the
             text after parsing, where an escape is already undone:
               ":" before a non-space      http://x autolinks, :material/x: icons, :red[x] directives
               "www." and "@"              bare-domain and e-mail autolinks
    code(s)  an inline code span whose fence is longer than any backtick run in s: nothing inside
             is interpreted and the text reads verbatim (ids, option=value pairs)
    html(s)  inside st.html: HTML-escaped, quotes included
"""
from __future__ import annotations

import html as _html
import re

_MARKUP = re.compile(r"([\\`*~$|#<]|(?<!\w)_|_(?!\w))")  # intraword "_" (forget_acc) starts nothing
_LINK = re.compile(r"\](?=[(\[])")
_JOIN = re.compile(r"(?i)(:(?=\S)|@|(?<![\w.])www(?=\.))")
WJ = "\u2060"  # WORD JOINER: zero width, breaks a pattern without showing
_LEADING = re.compile(r"^(\s*)([-+>]|\d+(?=[.)]))")
_TICKS = re.compile(r"`+")


def _one_line(s) -> str:
    return " ".join(str(s).splitlines())  # a newline could start a heading, a list or a new block


def md(s) -> str:
    s = _MARKUP.sub(r"\\\1", _one_line(s))
    s = _LINK.sub(r"]\\", s)
    s = _JOIN.sub(lambda m: m.group(0) + WJ, s)
    m = _LEADING.match(s)
    if m:
        marker = m.group(2)
        s = m.group(1) + (marker + "\\" if marker[0].isdigit() else "\\" + marker) + s[m.end():]
    return s


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
