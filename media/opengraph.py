"""OpenGraph (https://ogp.me/) data from an HTML page, with the stdlib's html.parser.

Pure: bytes in, a dict out. The result is what Matrix clients expect from
preview_url: og:title, og:description, og:image (absolute URL here; the
previewer swaps it for an mxc:// URI once the image is stored).
"""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser
from urllib.parse import urljoin

# Longer values are dropped, as Synapse does: a preview is a teaser, and a
# hostile page must not make every client render megabytes of "description".
MAX_KEY_LENGTH = 50
MAX_VALUE_LENGTH = 1000
# Fallback descriptions from body text are cut to this many characters.
_BODY_TEXT_CHARS = 500

_WHITESPACE = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_:.\-]+)""", re.IGNORECASE)
_SKIP_TEXT_IN = {"script", "style", "noscript", "template", "svg", "head", "title", "header", "nav", "footer"}


def decode_html(body: bytes, header_charset: str | None) -> str:
    """The page as text: the charset from the HTTP header, else a <meta> in the first KB, else UTF-8."""
    for candidate in (header_charset, _sniff_charset(body[:1024])):
        if candidate:
            try:
                codecs.lookup(candidate)
            except LookupError:
                continue
            return body.decode(candidate, errors="replace")
    return body.decode("utf-8", errors="replace")


def _sniff_charset(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    match = _META_CHARSET.search(head)
    return match.group(1).decode("ascii") if match else None


class _OpenGraphParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.meta_names: dict[str, str] = {}
        self.title: str | None = None
        self.link_image: str | None = None
        self.first_img: str | None = None
        self.text: list[str] = []
        self._text_length = 0
        self._open: list[str] = []
        self._in_title = False
        self._title_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "meta":
            content = attributes.get("content")
            if content is None:
                return
            # og: tags belong in property=, but many pages put them in name=.
            key = attributes.get("property") or attributes.get("name") or ""
            key = key.strip()
            if key.startswith("og:"):
                self.og.setdefault(key, content)
            elif key:
                self.meta_names.setdefault(key.lower(), content)
        elif tag == "title" and self.title is None:
            self._in_title = True
        elif tag == "link" and "image_src" in attributes.get("rel", "").split():
            self.link_image = self.link_image or attributes.get("href")
        elif tag == "img" and self.first_img is None and attributes.get("src"):
            self.first_img = attributes["src"]
        if tag not in ("meta", "link", "img", "br", "hr", "input"):
            self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self.title = "".join(self._title_parts)
        if tag in self._open:
            while self._open and self._open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)
            return
        if self._text_length >= _BODY_TEXT_CHARS or any(t in _SKIP_TEXT_IN for t in self._open):
            return
        if data.strip():
            self.text.append(data)
            self._text_length += len(data)


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = _WHITESPACE.sub(" ", value).strip()
    return value or None


def parse_open_graph(html: str, page_url: str) -> dict[str, str]:
    """og:* tags of the page, with the usual fallbacks when a page has none.

    Relative og:image URLs are resolved against page_url (the URL after redirects).
    """
    parser = _OpenGraphParser()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup
        pass
    og = {key: value for key, value in ((k, _clean(v)) for k, v in parser.og.items()) if value}

    if "og:title" not in og:
        title = _clean(parser.title) or _clean(parser.meta_names.get("twitter:title"))
        if title:
            og["og:title"] = title
    if "og:description" not in og:
        description = (
            _clean(parser.meta_names.get("description"))
            or _clean(parser.meta_names.get("twitter:description"))
            or _clean(" ".join(parser.text)[:_BODY_TEXT_CHARS])
        )
        if description:
            og["og:description"] = description
    if "og:image" not in og:
        image = _clean(parser.meta_names.get("twitter:image")) or _clean(parser.link_image) or _clean(parser.first_img)
        if image:
            og["og:image"] = image
    if "og:image" in og:
        image_url = urljoin(page_url, og["og:image"])
        if image_url.startswith(("http://", "https://")):
            og["og:image"] = image_url
        else:
            del og["og:image"]  # data:, javascript: and the like are not fetched

    return {
        key: value for key, value in og.items()
        if len(key) <= MAX_KEY_LENGTH and len(value) <= MAX_VALUE_LENGTH
    }
