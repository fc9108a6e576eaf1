"""Regenerate ``src/gradkit/bench/data/web_gospels.txt``, the text of the ``lm`` bench suite.

Not run at install or bench time: the text ships with gradkit. This script documents how it
was made and makes it reproducible. Source: Debian's ``sword-text-web`` package (World English
Bible, SWORD module ``engWEB2015eb``, dedicated to the public domain; see the NOTICE next to
the text). Steps::

    apt-get download sword-text-web && dpkg-deb -x sword-text-web_*.deb web
    python scripts/make_lm_text.py web/usr/share/sword/modules/texts/ztext/engWEB2015eb \
        src/gradkit/bench/data/web_gospels.txt

What it does: decompress the zText blocks of the New Testament (one zlib block per book;
``nt.bzs`` holds 12-byte ``(offset, size, uncompressed size)`` records into ``nt.bzz``), replace
footnotes (``<note>``) by a space, drop headings (``<title>``), end a line at every paragraph end, remove
all other markup, map typographic punctuation to ASCII, drop any remaining non-ASCII
character, and keep the four Gospels and Acts (whole books, in canonical order).
"""

from __future__ import annotations

import re
import struct
import sys
import zlib
from pathlib import Path

BOOKS = ("Matt", "Mark", "Luke", "John", "Acts")
ASCII = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2014": "--",
    "\u2013": "-",
    "\u00a0": " ",
}


def blocks(module: Path, testament: str) -> list[str]:
    """The decompressed text of every block (one book each) of ``nt`` or ``ot``."""
    index = (module / f"{testament}.bzs").read_bytes()
    data = (module / f"{testament}.bzz").read_bytes()
    out = []
    for i in range(len(index) // 12):
        offset, size, _ = struct.unpack("<III", index[i * 12 : i * 12 + 12])
        out.append(zlib.decompress(data[offset : offset + size]).decode("utf-8"))
    return out


def plain(osis: str) -> str:
    """OSIS markup → plain text, one paragraph per line."""
    text = re.sub(r"<note\b.*?</note>", " ", osis, flags=re.S)
    text = re.sub(r"<title\b.*?</title>", "", text, flags=re.S)
    text = re.sub(r'<div eID="[^"]*" type="x-p"/>', "\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    for k, v in ASCII.items():
        text = text.replace(k, v)
    text = text.encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" ([,.;:!?])", r"\1", text)  # a removed footnote sat before punctuation
    lines = (line.strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line) + "\n"


def main(module: str, out: str) -> None:
    texts = []
    for block in blocks(Path(module), "nt"):
        m = re.search(r'osisID="([A-Za-z0-9]+)"[^>]*type="book"', block)
        if m and m.group(1) in BOOKS:
            texts.append((BOOKS.index(m.group(1)), plain(block)))
    if len(texts) != len(BOOKS):
        raise SystemExit(f"found {len(texts)} of the books {BOOKS}")
    Path(out).write_text("".join(t for _, t in sorted(texts)), encoding="ascii")


if __name__ == "__main__":
    main(*sys.argv[1:3])
