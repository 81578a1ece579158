"""Provenance embedded in exported files, so a figure found in a slide deck still says what made it:
PNG text chunks, an SVG ``<metadata>`` element, PDF document info."""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from collections.abc import Mapping
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from PIL import Image, PngImagePlugin
from pypdf import PdfReader, PdfWriter

from core.errors import PathReviewError
from core.export.provenance import Provenance

PROVENANCE_KEY = "pathreview:provenance"
SOFTWARE = "PathReview"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SVG_NS = "http://www.w3.org/2000/svg"
_SVG_ROOT_TAG = re.compile(rb"<svg\b[^>]*>")
_PDF_KEY = "/Keywords"


def provenance_json(provenance: Provenance) -> str:
    return json.dumps(provenance.as_dict(), sort_keys=True, default=str)


def embed_provenance(data: bytes, fmt: str, provenance: Provenance) -> bytes:
    if fmt == "png":
        return _png_with_text(data, provenance)
    if fmt == "svg":
        return _svg_with_metadata(data, provenance)
    if fmt == "pdf":
        return _pdf_with_info(data, provenance)
    raise PathReviewError(f"cannot embed provenance in a {fmt!r} file")


def read_provenance(data: bytes, fmt: str) -> dict | None:
    """The provenance embedded by ``export_figure``, or None when the file carries none."""
    text: object  # a PNG or SVG text, or a PDF metadata value
    try:
        if fmt == "png":
            image = Image.open(io.BytesIO(data))
            if not isinstance(image, PngImagePlugin.PngImageFile):
                raise ValueError(f"it holds a {image.format} image")
            text = image.text.get(PROVENANCE_KEY)
        elif fmt == "svg":
            root = ElementTree.fromstring(data)
            node = root.find(f"{{{_SVG_NS}}}metadata[@id='{PROVENANCE_KEY}']")
            text = node.text if node is not None else None
        elif fmt == "pdf":
            info: Mapping[str, object] = PdfReader(io.BytesIO(data)).metadata or {}
            text = info.get(_PDF_KEY)
        else:
            raise PathReviewError(f"unknown figure format {fmt!r}")
    except (OSError, ElementTree.ParseError, ValueError) as exc:
        raise PathReviewError(f"this is not a readable {fmt.upper()} file: {exc}") from exc
    if not text:
        return None
    try:
        return json.loads(str(text))
    except json.JSONDecodeError:
        return None


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def _png_with_text(data: bytes, provenance: Provenance) -> bytes:
    """Text chunks spliced in after IHDR: the pixels are not decoded and re-encoded (that would cost more than the render)."""
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise PathReviewError("the renderer returned something that is not a PNG image")
    ihdr_end = 8 + 8 + struct.unpack(">I", data[8:12])[0] + 4
    chunks = (
        _png_chunk(b"tEXt", PROVENANCE_KEY.encode("latin-1") + b"\0" + provenance_json(provenance).encode("ascii")),
        _png_chunk(b"tEXt", b"Software\0" + SOFTWARE.encode("latin-1")),
        # iTXt: the caption is UTF-8 (·, …, µ); keyword, no compression, no language, no translated keyword.
        _png_chunk(b"iTXt", b"Description\0\0\0\0\0" + provenance.caption().encode("utf-8")),
    )
    return data[:ihdr_end] + b"".join(chunks) + data[ihdr_end:]


def _svg_with_metadata(data: bytes, provenance: Provenance) -> bytes:
    match = _SVG_ROOT_TAG.search(data)
    if match is None:
        raise PathReviewError("the renderer returned something that is not an SVG image")
    element = (f'<metadata id="{PROVENANCE_KEY}">{escape(provenance_json(provenance))}</metadata>'
               f"<desc>{escape(provenance.caption())}</desc>").encode()
    return data[: match.end()] + element + data[match.end() :]


def _pdf_with_info(data: bytes, provenance: Provenance) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.add_metadata({"/Title": provenance.explainer or "PathReview figure", "/Subject": provenance.caption(),
                         _PDF_KEY: provenance_json(provenance), "/Creator": SOFTWARE})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
