"""What of a caller's request reaches the upstream URL, checked so that nothing in it can change
the upstream host or leave the service's base path.

The path after ``/services/{name}`` is taken as the client sent it (``raw_path``, still
percent-encoded) and forwarded unchanged, once checked, but for one thing: a ``%2F`` is taken as
the ``/`` it encodes, since clients generated from an OpenAPI document (the catalog's documents
``{path}`` as one parameter) must encode the slashes of a multi-segment path. That is done
first, and the check then runs on the result, so an encoded slash can do no more than a plain
one: no dot segment (``..``, ``.``, in any encoding, with ``;`` parameters), no slash encoded
twice (``%252F``), no encoded backslash, no backslash, no empty segment (``//host``), no control
character, bounded length. The URL is then built from the service's
own scheme, host and port and this path (``Service.url``), never parsed from a string a caller
shaped, so an ``@``, an absolute-form target or a ``Host`` header changes nothing.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from switchboard.config.services import SERVICE_NAME
from switchboard.errors import InvalidRequest, NotFound

PREFIX = "/services/"
MAX_PATH = 8192
MAX_QUERY = 16384
_NAME = re.compile(SERVICE_NAME)
# Printable ASCII except space, backslash, '#' and the characters a URL never carries raw.
_RAW_PATH = re.compile(r"^[!$&'()*+,\-./0-9:;=@A-Z_a-z~%]*$")
_RAW_QUERY = re.compile(rb"^[!$&'()*+,\-./0-9:;=?@A-Z_a-z~%\[\]|{}^`\"<>]*$")
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENCODED_SLASH = re.compile(r"%2[Ff]")


class UnsafePath(InvalidRequest):
    code = "invalid_service_path"


def split(raw_path: str) -> tuple[str, str]:
    """(service name, the rest of the path) of ``/services/{name}{rest}``; ``rest`` is empty or
    starts with a slash. 404 for a name that is no valid service name, and for a prefix sent
    encoded (the route was chosen on the decoded path: ``/%73ervices/x`` read at the prefix's
    length would name another service)."""
    tail = raw_path[len(PREFIX):]
    name, slash, rest = tail.partition("/")
    if not raw_path.startswith(PREFIX):
        raise NotFound(f"no service: the path must start with {PREFIX} unencoded", code="service_not_found")
    if not _NAME.match(name):
        raise NotFound(f"no service '{name[:64]}'", code="service_not_found")
    return name, slash + rest


def _decoded(segment: str) -> bytes:
    """``segment`` percent-decoded until nothing changes (double encoding is seen through)."""
    data = segment.encode("ascii")
    for _ in range(4):
        decoded = unquote_to_bytes(data)
        if decoded == data:
            break
        data = decoded
    return data


def check_path(rest: str) -> str:
    """``rest``, its ``%2F`` taken as slashes, if that is safe to append to the service's base
    path (see the module), else 400."""
    # A '/' cannot be part of an escape, so this makes no new one: every escape left was the
    # caller's, and everything below checks the path that will be forwarded.
    rest = _ENCODED_SLASH.sub("/", rest)
    if len(rest) > MAX_PATH:
        raise UnsafePath(f"the service path is over {MAX_PATH} characters")
    if rest and not rest.startswith("/"):
        raise UnsafePath("the service path must start with '/'")
    if not _RAW_PATH.match(rest) or _ESCAPE.search(rest):
        raise UnsafePath("the service path has characters a path may not carry")
    segments = rest.split("/")[1:]
    for i, segment in enumerate(segments):
        if not segment:
            if i == len(segments) - 1:
                continue  # a trailing slash
            raise UnsafePath("the service path has an empty segment ('//')")
        data = _decoded(segment)
        if any(b < 0x20 or b == 0x7F for b in data) or b"/" in data or b"\\" in data:
            raise UnsafePath("the service path has an encoded slash, backslash or control character")
        if data.split(b";", 1)[0] in (b".", b".."):
            raise UnsafePath("the service path has a dot segment ('.' or '..')")
    return rest


def check_query(query: bytes) -> bytes:
    if len(query) > MAX_QUERY:
        raise UnsafePath(f"the query string is over {MAX_QUERY} bytes")
    if not _RAW_QUERY.match(query):
        raise UnsafePath("the query string has characters a URL may not carry")
    return query
