"""A Griffe extension that lets gradkit's docstrings render well on the mkdocs site.

gradkit's docstrings follow the Google style that the doctests and ``help()`` read, with a few
reStructuredText habits that Markdown does not understand. Before mkdocstrings parses a
docstring, this rewrites (in the rendered copy only; the source is untouched):

* an ``Example:`` section header to ``Examples:``, so Griffe parses it as an examples section
  and renders each ``>>>`` block as highlighted code (in Griffe's Google parser ``Example:`` is a
  plain admonition, whose ``>>>`` lines would be reflowed into one paragraph);
* ``:math:`x``` to inline ``$x$`` and a ``.. math::`` block to a ``$$ ... $$`` block (MathJax via
  ``pymdownx.arithmatex``);
* a parameter entry that documents several parameters at once (``a, b: ...`` or
  ``a / b: ...``, as in ``maximize, foreach, fused, nonfinite: as in AdamW.``) to one entry per
  parameter with the same description, so Griffe checks each name against the signature;
* a reStructuredText literal block (a paragraph ending in ``::`` and the indented block after
  it) to a single colon and a fenced code block;
* a Sphinx cross-reference role (``:func:``, ``:class:``, ``:meth:``, ``:mod:``, ``:attr:``,
  ``:data:``, ``:obj:``, ``:exc:``) to an inline code span of the name.

Loaded from ``mkdocs.yml`` (``extensions: [docs/_ext/griffe_rst.py]``); not part of the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc|py:\w+):`~?([^`]+)`")
_MATH_BLOCK = re.compile(r"^(\s*)\.\. math::\s*(.*)$")
_LITERAL = re.compile(r"^(?!\s*\.\. )(.*\S)::\s*$")
_ARGS_HEADER = re.compile(
    r"^(\s*)(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters):\s*$"
)
_GROUPED = re.compile(r"^(\s*)([A-Za-z_]\w*(?:\s*(?:,|/)\s*[A-Za-z_]\w*)+)\s*:(.*)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _math_blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MATH_BLOCK.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        pad, first = match.group(1), match.group(2)
        body = [first] if first else []
        i += 1
        while i < len(lines):
            line = lines[i]
            if line.strip() and _indent(line) <= len(pad):
                break
            if not line.strip():
                nxt = next((ln for ln in lines[i + 1 :] if ln.strip()), "")
                if _indent(nxt) <= len(pad):
                    break
            body.append(line.strip())
            i += 1
        out.extend([f"{pad}$$", *(f"{pad}{b}" for b in body if b), f"{pad}$$"])
    return "\n".join(out)


def _literal_blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _LITERAL.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        base = _indent(lines[i])
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        block_end = j
        while block_end < len(lines) and (
            not lines[block_end].strip() or _indent(lines[block_end]) > base
        ):
            block_end += 1
        while block_end > j and not lines[block_end - 1].strip():
            block_end -= 1
        if block_end == j:  # no indented block follows: keep the text, drop one colon
            out.append(match.group(1) + ":")
            i += 1
            continue
        cut = min(_indent(ln) for ln in lines[j:block_end] if ln.strip()) - base
        pad = " " * base
        block = [pad + ln[base + cut :] if ln.strip() else "" for ln in lines[j:block_end]]
        out.extend([match.group(1) + ":", "", f"{pad}```python", *block, f"{pad}```"])
        i = block_end
    return "\n".join(out)


def _split_grouped_params(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    section_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        header = _ARGS_HEADER.match(line)
        if header is not None:
            section_indent = len(header.group(1))
            out.append(line)
            i += 1
            continue
        if section_indent is not None and line.strip() and _indent(line) <= section_indent:
            section_indent = None
        grouped = _GROUPED.match(line) if section_indent is not None else None
        if grouped is None:
            out.append(line)
            i += 1
            continue
        pad, names, first = grouped.group(1), grouped.group(2), grouped.group(3)
        item_indent = len(pad)
        i += 1
        rest: list[str] = []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > item_indent):
            if not lines[i].strip():
                nxt = next((ln for ln in lines[i + 1 :] if ln.strip()), "")
                if _indent(nxt) <= item_indent:
                    break
            rest.append(lines[i])
            i += 1
        for name in re.split(r"\s*[,/]\s*", names):
            out.extend([f"{pad}{name}:{first}", *rest])
    return "\n".join(out)


def rewrite(text: str) -> str:
    """Return ``text`` with the reStructuredText habits above rewritten to Markdown."""
    text = _EXAMPLE.sub(r"\1Examples:", text)
    text = _split_grouped_params(text)
    text = _math_blocks(text)
    text = _literal_blocks(text)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1).strip()}$", text)
    return _XREF_ROLE.sub(r"`\1`", text)


class RstToMarkdown(griffe.Extension):
    """Rewrite each docstring once the object tree is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
