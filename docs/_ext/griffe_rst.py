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


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """Index after the block from ``start`` whose non-blank lines are indented more than
    ``indent`` (blank lines inside the block belong to it, trailing ones do not)."""
    end = last = start
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > indent):
        end += 1
        if lines[end - 1].strip():
            last = end
    return last


def _math_blocks(text: str) -> str:
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        match = _MATH_BLOCK.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        pad, end = match.group(1), _block_end(lines, i + 1, len(match.group(1)))
        body = [match.group(2), *(ln.strip() for ln in lines[i + 1 : end])]
        out.extend([f"{pad}$$", *(f"{pad}{b}" for b in body if b), f"{pad}$$"])
        i = end
    return "\n".join(out)


def _literal_blocks(text: str) -> str:
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        match = _LITERAL.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        base, start = _indent(lines[i]), i + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        end = _block_end(lines, start, base)
        out.append(match.group(1) + ":")
        if end > start:  # the indented block becomes a fenced block at the paragraph's indent
            cut = min(_indent(ln) for ln in lines[start:end] if ln.strip())
            pad = " " * base
            block = [pad + ln[cut:] if ln.strip() else "" for ln in lines[start:end]]
            out.extend(["", f"{pad}```python", *block, f"{pad}```"])
        i = max(end, i + 1)
    return "\n".join(out)


def _split_grouped_params(text: str) -> str:
    lines, out, i = text.split("\n"), [], 0
    section_indent: int | None = None
    while i < len(lines):
        line = lines[i]
        header = _ARGS_HEADER.match(line)
        if section_indent is not None and line.strip() and _indent(line) <= section_indent:
            section_indent = None
        grouped = _GROUPED.match(line) if section_indent is not None else None
        if header is not None:
            section_indent = len(header.group(1))
        if grouped is None:
            out.append(line)
            i += 1
            continue
        end = _block_end(lines, i + 1, len(grouped.group(1)))
        for name in re.split(r"\s*[,/]\s*", grouped.group(2)):
            out.extend([f"{grouped.group(1)}{name}:{grouped.group(3)}", *lines[i + 1 : end]])
        i = end
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
