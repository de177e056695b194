"""multipart/form-data request bodies, parsed as they arrive by the gateway's one multipart reader
(:class:`~switchboard.http.files.multipart.MultipartReader`, python-multipart's streaming parser),
files written to spooled temporary files (memory up to a megabyte, then disk), with every size
bounded: the whole body, each file part, each text field, the number of parts, and each part's
headers.

The result is the form's fields by name, in order: text fields as ``str``, files as
:class:`~switchboard.providers.media.FilePart`. What exceeds a bound is refused (413) as soon as it
is seen; a body that is not well-formed multipart is refused (400, ``invalid_multipart``).
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.errors import PayloadTooLarge, UnsupportedMediaType
from switchboard.http.asgi import Receive
from switchboard.http.files.multipart import InvalidMultipart, MultipartReader, Part, boundary_of
from switchboard.providers.media import FilePart, spooled

__all__ = ["Form", "FormLimits", "InvalidMultipart", "read_form"]

Form = dict[str, list["str | FilePart"]]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FormLimits:
    max_body_bytes: int = 32 * MIB
    max_file_bytes: int = 25 * MIB  # OpenAI's audio limit; image edits allow less
    max_field_bytes: int = 256 * 1024  # a prompt of 32 000 characters, 4 bytes each at worst
    max_parts: int = 32


async def _file(reader: MultipartReader, part: Part, limit: int) -> FilePart:
    """The current part's data, spooled, at most ``limit`` bytes."""
    file, size = spooled(), 0
    try:
        async for piece in reader.data():
            size += len(piece)
            if size > limit:
                raise PayloadTooLarge(f"the file '{part.name}' exceeds the limit of {limit} bytes")
            file.write(piece)
    except BaseException:
        file.close()
        raise
    return FilePart(part.filename or "file", part.content_type or "application/octet-stream", file, size)


async def read_form(receive: Receive, content_type: str | None, declared: str | None,
                    limits: FormLimits) -> Form:
    """Read and parse the body from ``receive``; raises PayloadTooLarge, InvalidMultipart, or
    ConnectionAbortedError when the client leaves mid-body."""
    try:
        boundary = boundary_of(content_type)
    except UnsupportedMediaType:
        raise InvalidMultipart("send the request as multipart/form-data") from None
    # A Content-Length padded with zeros past what int() reads (4300 digits) is left to the
    # reader's limit.
    if (declared is not None and declared.isascii() and declared.isdigit() and len(declared) <= 18
            and int(declared) > limits.max_body_bytes):
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limits.max_body_bytes} bytes")
    reader = MultipartReader(receive, boundary, limits.max_body_bytes, limits.max_parts)
    form: Form = {}
    try:
        while (part := await reader.next_part()) is not None:
            value: str | FilePart
            if part.filename is not None:
                value = await _file(reader, part, limits.max_file_bytes)
            else:
                value = await reader.value(limits.max_field_bytes, too_large=PayloadTooLarge)
            form.setdefault(part.name, []).append(value)
    except BaseException:
        for values in form.values():
            for item in values:
                if isinstance(item, FilePart):
                    item.file.close()
        raise
    finally:
        reader.close()
    if not form:
        raise InvalidMultipart("the multipart body has no parts")
    return form
