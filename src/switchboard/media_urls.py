"""The URLs of images and files in content parts, read one way for every provider, inbound API
and the token counter (which sits below the providers, so this module sits below both).

- A scheme is compared in lower case (RFC 3986 section 3.1: schemes are case-insensitive), so
  ``HTTPS://`` is ``https://`` and ``DATA:`` is ``data:``; a URL goes upstream with its scheme
  in lower case, the form every provider takes.
- A ``data:`` URL (RFC 2397) must be base64 of a media type:
  ``data:<type>/<subtype>[;<attribute>=<value>...];base64,<data>``. The media type and the
  ``;base64`` token are case-insensitive too; the type is read in lower case, ``image/jpg`` (which
  OpenAI accepts) as the registered ``image/jpeg``. The data must be standard, padded base64 and
  not empty: anything else is a 400 naming the part, not the provider's error after a round trip
  (or an image silently dropped by it).
- Bare base64 (``input_audio.data``) is held to the same rule (:func:`base64_data`), and an
  ``input_audio`` part needs its ``format`` too (:func:`input_audio`).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

from switchboard.errors import InvalidRequest

_HEADER = re.compile(r"([\w.+-]+/[\w.+-]+)((?:;[\w.+-]+=[^;,]*)*);base64", re.IGNORECASE)
_ALIASES = {"image/jpg": "image/jpeg"}
_ALPHABET = (string.ascii_letters + string.digits + "+/").encode()
_DATA = "data:"


@dataclass(frozen=True, slots=True)
class DataURL:
    media_type: str  # in lower case, aliases resolved
    parameters: str  # ";name=value..." as written, or ""
    data: str  # base64, checked


def scheme(url: str) -> str:
    """The scheme of ``url`` in lower case; "" when it has none."""
    colon = url.find(":")
    return url[:colon].lower() if colon > 0 else ""


def lowered(url: str) -> str:
    """``url`` with its scheme in lower case (``HTTPS://host/x`` -> ``https://host/x``)."""
    name = scheme(url)
    return url if url.startswith(name) else name + url[len(name):]


def is_data(url: str) -> bool:
    return url[:5].lower() == _DATA


def _header(url: str) -> re.Match[str] | None:
    """The media type and parameters of a data URL of base64 (its match ends at the comma)."""
    if not is_data(url):
        return None
    comma = url.find(",")
    return _HEADER.fullmatch(url, 5, comma) if comma > 0 else None


def data_url(url: str, param: str) -> DataURL:
    """The parts of a ``data:`` URL; a 400 naming ``param`` when it is not base64 of a media type."""
    header = _header(url)
    if header is None:
        raise InvalidRequest("data URLs must be base64-encoded: 'data:<media type>;base64,<data>'",
                             param=param, code="invalid_value")
    data = base64_data(url[header.end() + 1:], param, "the data URL's data")
    return DataURL(media_type(header.group(1)), header.group(2), data)


def data_start(url: str) -> int:
    """Where the data of a ``data:`` URL of base64 of a media type begins, the data unchecked
    (for the token counter, which reads only its first bytes and refuses nothing); -1 when
    ``url`` is no such URL."""
    header = _header(url)
    return -1 if header is None else header.end() + 1


def data_type(url: str) -> tuple[str, int] | None:
    """The media type of a ``data:`` URL of base64 (:func:`media_type`) and where its data begins,
    the data unchecked (for the token counter, which refuses nothing); None when ``url`` is no
    such URL."""
    header = _header(url)
    return None if header is None else (media_type(header.group(1)), header.end() + 1)


def base64_data(data: Any, param: str, what: str = "the data") -> str:
    """``data`` when it is standard, padded base64 and not empty; else a 400 naming ``param``."""
    if not isinstance(data, str):
        raise InvalidRequest(f"{what} must be a string of base64", param=param, code="invalid_value")
    if not is_base64(data):
        raise InvalidRequest(f"{what} is not valid base64 (the standard alphabet, padded)"
                             if data else f"{what} holds no data", param=param, code="invalid_value")
    return data


def input_audio(audio: Any, where: str) -> tuple[str, str]:
    """The base64 data and the format of the ``input_audio`` object of the part at ``where``.
    OpenAI requires both: a format left out is a 400 naming it, not audio labelled
    ``audio/None`` (Gemini) or left for the server to guess. Its value is the provider's to judge
    (OpenAI takes ``wav`` and ``mp3``, Gemini more)."""
    param = f"{where}.input_audio"
    if not isinstance(audio, dict):
        raise InvalidRequest("input_audio must be an object with 'data' and 'format'", param=param,
                             code="invalid_value")
    data = base64_data(audio.get("data"), f"{param}.data", "the audio data")
    given = audio.get("format")
    if given is None:
        raise InvalidRequest("the audio's format is required ('wav' or 'mp3')", param=f"{param}.format",
                             code="missing_required_parameter")
    if not isinstance(given, str) or not given:
        raise InvalidRequest("the audio's format must be a non-empty string ('wav' or 'mp3')",
                             param=f"{param}.format", code="invalid_value")
    return data, given


def media_type(value: str) -> str:
    """A media type in lower case (media types are case-insensitive), ``image/jpg`` as ``image/jpeg``."""
    value = value.lower()
    return _ALIASES.get(value, value)


def canonical(url: Any, param: str) -> Any:
    """``url`` as it goes to a provider that takes image URLs as written (OpenAI's form): its scheme
    in lower case, a data URL checked and in canonical form. The same string (not a copy) when it
    already is, as nearly every URL is; anything but a string as it is (the provider judges it)."""
    if not isinstance(url, str):
        return url
    if not is_data(url):
        return lowered(url)
    parsed = data_url(url, param)
    head = f"data:{parsed.media_type}{parsed.parameters};base64,"
    return url if url.startswith(head) else head + parsed.data


def needs_reading(url: object) -> bool:
    """Whether :func:`canonical` may change or refuse ``url``: a data URL, or a scheme not in lower
    case. A cheap look, for the adapters that otherwise pass a part on untouched."""
    if not isinstance(url, str):
        return False
    name = scheme(url)
    return name == "data" or not url.startswith(name)


def is_base64(data: str) -> bool:
    """Whether ``data`` is standard base64 with its padding: what is left once the alphabet is
    taken out is at most two '=' at the end. (A translate in C: several times faster than a
    decode of data that is often megabytes, and nothing is kept.)"""
    try:
        raw = data.encode("ascii")
    except UnicodeEncodeError:
        return False
    left = raw.translate(None, _ALPHABET)
    padded = len(left) <= 2 and left == b"=" * len(left) and raw.endswith(left)
    return bool(raw) and len(raw) % 4 == 0 and padded
