"""Images in self-contained HTML pages: thumbnails, and every distinct image embedded once.

A report that shows the same picture twice (a real example beside every class, a plot in two
sections) would carry its base64 bytes twice. :class:`EmbeddedImages` keeps one ``<image>``
per distinct PNG in a hidden SVG ``<defs>`` block and shows it wherever it is needed through
``<svg><use href="#id"/></svg>``: no script, printable, and the page grows by one copy per image.
"""

from __future__ import annotations

import hashlib
import html
import struct

import numpy as np

from .imageio import png_bytes, png_data_uri

__all__ = ["EmbeddedImages", "png_size", "thumbnail_png"]


def png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of PNG bytes, read from the IHDR chunk.

    Raises:
        ValueError: not PNG bytes.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def thumbnail_png(plane: np.ndarray, *, max_side: int = 128) -> bytes:
    """A grey PNG of a 2D plane in ``[0, 1]``, shrunk (area average) so its longer side is at most ``max_side``."""
    from PIL import Image

    img = Image.fromarray((np.clip(np.nan_to_num(np.asarray(plane, dtype=np.float32)), 0, 1) * 255).astype(np.uint8))
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BOX)
    return png_bytes(lambda buf: img.save(buf, format="PNG", optimize=True))


class EmbeddedImages:
    """The images of one HTML page, each distinct PNG embedded once.

    ``show(png)`` returns the markup that displays it (as often as needed); ``defs()`` the one
    block, placed anywhere in the page body, that holds every image shown.
    """

    def __init__(self, prefix: str = "im") -> None:
        self.prefix = prefix
        self._ids: dict[str, str] = {}
        self._defs: list[str] = []

    def __len__(self) -> int:
        return len(self._defs)

    def show(self, png: bytes, *, alt: str = "", height: int | None = None, pixelated: bool = False,
             title: str | None = None) -> str:
        """Markup showing ``png`` (its own size, or scaled to ``height`` px); an image seen before is reused."""
        width, natural = png_size(png)
        digest = hashlib.sha256(png).hexdigest()
        ident = self._ids.get(digest)
        if ident is None:
            ident = self._ids[digest] = f"{self.prefix}{len(self._ids)}"
            style = ' style="image-rendering:pixelated"' if pixelated else ""
            self._defs.append(f'<image id="{ident}" width="{width}" height="{natural}"{style} '
                              f'href="{png_data_uri(png)}"/>')
        shown_h = natural if height is None else height
        shown_w = round(width * shown_h / natural) if natural else width
        tip = f"<title>{html.escape(title)}</title>" if title else ""
        return (f'<svg class="embedded" role="img" aria-label="{html.escape(alt)}" width="{shown_w}" '
                f'height="{shown_h}" viewBox="0 0 {width} {natural}">{tip}<use href="#{ident}"/></svg>')

    def defs(self) -> str:
        """The hidden block that holds every image shown so far (empty when none)."""
        if not self._defs:
            return ""
        return ('<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>'
                + "".join(self._defs) + "</defs></svg>")
