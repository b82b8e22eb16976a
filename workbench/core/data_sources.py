"""Raw bytes to text: decoding a file's bytes (Unicode BOMs, strict UTF-8, then a detected legacy
encoding, refusing binary data) and downloading a body from a URL with one clear error line when offline,
on an HTTP error or when it is too large. Nothing here knows about datasets or the registry.
"""

from __future__ import annotations

import codecs
import http.client
import re
import urllib.error
import urllib.request
from typing import Any

from .errors import WorkbenchError

DOWNLOAD_TIMEOUT_S = 30
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024

# ---------------------------------------------------------------- decoding


_UNICODE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # before UTF-16: they share bytes
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
MAX_CONTROL_SHARE = 0.001


def decode_text(raw: bytes, source: str) -> tuple[str, str]:
    """Bytes to (text, encoding): a Unicode BOM wins, then strict UTF-8, then a detected encoding.

    Binary data (NUL bytes outside UTF-16/32, many control characters) is refused."""
    for bom, encoding in _UNICODE_BOMS:
        if raw.startswith(bom):
            return _checked_text(_decode_or_refuse(raw, encoding, source), source), encoding
    if b"\x00" in raw:
        raise WorkbenchError(f"{source} looks binary (it contains NUL bytes); give a text file")
    try:
        return _checked_text(raw.decode("utf-8"), source), "utf-8"
    except UnicodeDecodeError:
        pass
    text, encoding = _decode_detected(raw, source)
    return _checked_text(text, source), encoding


def _decode_or_refuse(raw: bytes, encoding: str, source: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        raise WorkbenchError(f"{source} starts with a {encoding} byte-order mark but is not valid "
                             f"{encoding} (byte {error.start})") from None


# Detection often takes Western European (Latin-1 / Windows-1252) text for a Central European code page
# that decodes the same bytes to other letters; cp1252 wins when its decoding is about as clean.
PREFERRED_LEGACY_ENCODING = "cp1252"
PREFERENCE_CHAOS_MARGIN = 0.15


def _decode_detected(raw: bytes, source: str) -> tuple[str, str]:
    from charset_normalizer import from_bytes

    best = from_bytes(raw).best()
    if best is None:
        raise WorkbenchError(f"{source} is neither UTF-8 nor text in an encoding that can be detected; "
                             "convert it to UTF-8")
    western = from_bytes(raw, cp_isolation=[PREFERRED_LEGACY_ENCODING]).best()
    if western is not None and western.chaos <= best.chaos + PREFERENCE_CHAOS_MARGIN:
        best = western
    return str(best), best.encoding


def _checked_text(text: str, source: str) -> str:
    controls = len(_CONTROL_CHARS.findall(text))
    if controls > max(2, MAX_CONTROL_SHARE * len(text)):
        raise WorkbenchError(f"{source} looks binary ({controls} control characters); give a text file")
    return text


# ---------------------------------------------------------------- downloading


def download(url: str, what: str) -> bytes:
    """The body at `url`; one clear line when offline, on an HTTP error or when it is too large."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "workbench (+data get)"})
    except ValueError as error:
        raise WorkbenchError(f"cannot download {what}: bad URL {url!r} ({error})") from None
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            body = response.read(MAX_DOWNLOAD_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise WorkbenchError(f"cannot download {what} from {url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise WorkbenchError(f"cannot download {what} from {url}: offline or unreachable "
                             f"({_reason(error.reason)})") from None
    except TimeoutError:
        raise WorkbenchError(f"cannot download {what} from {url}: offline (timed out after "
                             f"{DOWNLOAD_TIMEOUT_S} s)") from None
    except (OSError, http.client.HTTPException) as error:
        raise WorkbenchError(f"cannot download {what} from {url}: {_reason(error)}") from None
    except ValueError as error:
        raise WorkbenchError(f"cannot download {what}: bad URL {url!r} ({error})") from None
    if len(body) > MAX_DOWNLOAD_BYTES:
        raise WorkbenchError(f"cannot download {what} from {url}: larger than "
                             f"{MAX_DOWNLOAD_BYTES // 2**20} MiB")
    return body


def _reason(reason: Any) -> str:
    text = getattr(reason, "strerror", None) or str(reason)
    return " ".join(str(text).split())
