"""Image generation on Google's Imagen models (``imagen-*``), for the gemini and vertex adapters:
OpenAI's ``POST /v1/images/generations`` as Imagen's ``:predict``.

Reference: https://ai.google.dev/gemini-api/docs/imagen and Vertex AI's Imagen API
(``instances[].prompt``, ``parameters.sampleCount`` / ``aspectRatio`` / ``outputOptions.mimeType``
-> ``predictions[].bytesBase64Encoded`` / ``mimeType``).

- ``n`` -> ``sampleCount`` (Imagen makes 1 to 4); ``size`` -> the nearest of Imagen's aspect ratios
  (1:1, 3:4, 4:3, 9:16, 16:9); ``output_format`` (png, jpeg) -> ``outputOptions.mimeType``.
- Imagen returns image bytes only: the answer is ``b64_json``; ``response_format: url`` is refused
  (400), as are edits (Imagen's editing is a different model family and API).
- Other OpenAI fields with no Imagen equivalent (``quality``, ``style``, ``background``,
  ``moderation``, ``output_compression``) are refused naming the field, never dropped silently.
- Images the safety filters removed are not answered (nor billed); none left is a 400
  ``content_policy_violation``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from switchboard.errors import InvalidRequest
from switchboard.providers.errors import invalid_body, loads_object, upstream_error
from switchboard.providers.media import JSON, MediaReply
from switchboard.providers.target import Target
from switchboard.upstream.request import UpstreamRequest

RATIOS = {"1:1": 1.0, "3:4": 0.75, "4:3": 4 / 3, "9:16": 9 / 16, "16:9": 16 / 9}
MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg"}
_UNSUPPORTED = ("quality", "style", "background", "moderation", "output_compression", "partial_images")
_HEADERS = {"Content-Type": "application/json"}


def is_imagen(target: Target) -> bool:
    return target.model.rsplit("/", 1)[-1].lower().startswith("imagen")


def _ratio(size: str) -> str:
    try:
        width, height = (int(x) for x in size.lower().split("x", 1))
    except ValueError:
        raise InvalidRequest(f"'size' must be WIDTHxHEIGHT, not {size[:40]!r}", param="size",
                             code="invalid_value") from None
    if width <= 0 or height <= 0:
        raise InvalidRequest("'size' must be positive", param="size", code="invalid_value")
    wanted = width / height
    return min(RATIOS, key=lambda name: abs(RATIOS[name] - wanted))


def imagen_request(request: JSON, target: Target, model_url: Callable[[Target, str], str]) -> UpstreamRequest:
    if request.get("response_format") == "url":
        raise InvalidRequest(f"the model '{target.name}' (Imagen) returns images as b64_json only; "
                             "leave 'response_format' unset or send 'b64_json'", param="response_format",
                             code="invalid_value")
    for key in _UNSUPPORTED:
        if request.get(key) is not None:
            raise InvalidRequest(f"'{key}' is not supported by Imagen (model '{target.name}')", param=key,
                                 code="unsupported_parameter")
    n = request.get("n") or 1
    if n > 4:
        raise InvalidRequest("Imagen makes at most 4 images per request ('n' 1 to 4)", param="n",
                             code="invalid_value")
    parameters: JSON = {"sampleCount": n}
    if isinstance(request.get("size"), str) and request["size"] != "auto":
        parameters["aspectRatio"] = _ratio(request["size"])
    fmt = request.get("output_format")
    if fmt is not None:
        if fmt not in MIME:
            raise InvalidRequest("'output_format' must be 'png' or 'jpeg' for Imagen", param="output_format",
                                 code="invalid_value")
        parameters["outputOptions"] = {"mimeType": MIME[fmt]}
    body = {"instances": [{"prompt": request["prompt"]}], "parameters": parameters}
    return UpstreamRequest("POST", model_url(target, "predict"), orjson.dumps(body), dict(_HEADERS))


def imagen_response(body: bytes, target: Target) -> MediaReply:
    """The images Imagen made. Those its safety filters removed are answered as
    ``{"raiFilteredReason"}`` entries, or left out (``{}`` when none is left): they are not
    images, and Google does not bill them. With none left the prompt was refused: a 400
    ``content_policy_violation`` (as OpenAI refuses one), which moves on to the fallbacks
    (class ``content_policy``) and is not retried on the same model as a bad answer would be."""
    obj = loads_object(body)
    predictions = obj.get("predictions", []) if obj is not None else None
    if obj is None or not isinstance(predictions, list):
        raise invalid_body(target)
    data = []
    reasons = []
    for item in predictions:
        image = item.get("bytesBase64Encoded") if isinstance(item, dict) else None
        if isinstance(image, str):
            data.append({"b64_json": image})
        elif isinstance(item, dict) and isinstance(item.get("raiFilteredReason"), str):
            reasons.append(item["raiFilteredReason"])
        else:
            raise invalid_body(target)
    if not data:
        said = f": {reasons[0][:500]}" if reasons else ""
        raise upstream_error(400, {}, target, f"Imagen (model '{target.name}') returned no image: its safety "
                             f"filters removed every image{said}", code="content_policy_violation",
                             param="prompt")
    body_out = {"created": int(time.time()), "data": data}
    return MediaReply(body=body_out, usage={"units": {"images": len(data)}})
