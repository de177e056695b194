"""multipart/form-data request bodies, parsed as they arrive (python-multipart's streaming
parser), files written to spooled temporary files (memory up to a megabyte, then disk), with
every size bounded: the whole body, each file part, each text field, the number of parts, and
each part's headers.

The result is the form's fields by name, in order: text fields as ``str``, files as
:class:`~switchboard.providers.media.FilePart`. What exceeds a bound is refused (413) as soon as it
is seen; a body that is not well-formed multipart is refused (400, ``invalid_multipart``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from switchboard.errors import InvalidRequest, PayloadTooLarge
from switchboard.http.asgi import Receive
from switchboard.providers.media import FilePart, spooled

Form = dict[str, list["str | FilePart"]]

MIB = 1024 * 1024


class InvalidMultipart(InvalidRequest):
    code = "invalid_multipart"


@dataclass(frozen=True, slots=True)
class FormLimits:
    max_body_bytes: int = 32 * MIB
    max_file_bytes: int = 25 * MIB  # OpenAI's audio limit; image edits allow less
    max_field_bytes: int = 256 * 1024  # a prompt of 32 000 characters, 4 bytes each at worst
    max_parts: int = 32


def boundary_of(content_type: str | None) -> bytes:
    media, params = parse_options_header(content_type or "")
    if media != b"multipart/form-data":
        raise InvalidMultipart("send the request as multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise InvalidMultipart("the multipart/form-data content type has no valid boundary")
    return boundary


class _Collector:
    """python-multipart callbacks that build the form and enforce the limits."""

    def __init__(self, limits: FormLimits) -> None:
        self.limits = limits
        self.form: Form = {}
        self.parts = 0
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()  # a text field's bytes
        self._file: IO[bytes] | None = None  # a file's, spooled
        self._size = 0
        self._name: str | None = None
        self._filename: str | None = None
        self._type = "application/octet-stream"

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise PayloadTooLarge(f"the form has more than {self.limits.max_parts} parts")
        self._headers = {}
        self._data = bytearray()
        self._file = None
        self._size = 0
        self._name = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition"))
        name = params.get(b"name")
        if disposition != b"form-data" or name is None:
            raise InvalidMultipart("a multipart part has no Content-Disposition: form-data name")
        self._name = name.decode("utf-8", "replace")
        filename = params.get(b"filename")
        self._filename = filename.decode("utf-8", "replace") if filename is not None else None
        self._type = self._headers.get(b"content-type", b"application/octet-stream").decode("latin-1")
        if self._filename is not None:
            self._file = spooled()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        limit = self.limits.max_file_bytes if self._file is not None else self.limits.max_field_bytes
        if self._size > limit:
            what = f"the file '{self._name}'" if self._filename is not None else f"the field '{self._name}'"
            raise PayloadTooLarge(f"{what} exceeds the limit of {limit} bytes")
        if self._file is not None:
            self._file.write(data[start:end])
        else:
            self._data += data[start:end]

    def on_part_end(self) -> None:
        assert self._name is not None
        value: str | FilePart
        if self._file is not None:
            value = FilePart(self._filename or "file", self._type, self._file, self._size)
        else:
            try:
                value = self._data.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidMultipart(f"the field '{self._name}' is not valid UTF-8") from None
        self.form.setdefault(self._name, []).append(value)


async def read_form(receive: Receive, content_type: str | None, declared: str | None,
                    limits: FormLimits) -> Form:
    """Read and parse the body from ``receive``; raises PayloadTooLarge, InvalidMultipart, or
    ConnectionAbortedError when the client leaves mid-body."""
    boundary = boundary_of(content_type)
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limits.max_body_bytes} bytes")
    collector = _Collector(limits)
    callbacks = {name: getattr(collector, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
        "on_part_data", "on_part_end")}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected while sending the body")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limits.max_body_bytes:
            raise PayloadTooLarge(f"request body exceeds the limit of {limits.max_body_bytes} bytes")
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidMultipart(f"the multipart body is malformed: {exc}") from None
        if not message.get("more_body"):
            break
    try:
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidMultipart(f"the multipart body is malformed: {exc}") from None
    if collector.parts == 0 or parser.state != parser.state.__class__.END:
        raise InvalidMultipart("the multipart body is incomplete (no closing boundary)")
    return collector.form
