"""The generated OpenAPI documents (apis/openapi.py): schemas with references carried into
components with their pointers rewritten, and examples bounded whatever the schema asks."""

from __future__ import annotations

import time
from typing import Any

import orjson
import referencing
import referencing.jsonschema

from switchboard.apis import openapi
from switchboard.stores.protocols import ApiRecord, PromptVersion


def _doc(variables: dict[str, Any], name: str = "orders.api",
         output: dict[str, Any] | None = None) -> dict[str, Any]:
    prompt = PromptVersion(tenant_id="t", name="p", version=1, messages=[], variables=variables, model="m",
                           output_schema=output)
    return openapi.one(ApiRecord(tenant_id="t", name=name, prompt="p"), prompt, "http://gw")


def _body(doc: dict[str, Any], name: str = "orders.api") -> dict[str, Any]:
    return dict(doc["paths"][f"/apis/{name}"]["post"]["requestBody"]["content"]["application/json"])


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    resource = referencing.jsonschema.DRAFT202012.create_resource(doc)
    return referencing.Registry().with_resource("urn:d", resource).resolver("urn:d").lookup(ref).contents


def test_a_schema_without_references_is_embedded_as_it_is() -> None:
    variables = {"type": "object", "properties": {"text": {"type": "string"}}}
    doc = _doc(variables)
    assert _body(doc)["schema"] == variables and set(doc["components"]["schemas"]) == {"Error"}


def test_references_are_rewritten_to_the_component() -> None:
    variables = {"type": "object", "properties": {
        "a": {"$ref": "#/$defs/a~1b"}, "self": {"$ref": "#"}, "deep": {"$ref": "#/properties/a"},
        "odd": {"const": {"$ref": "#/not/a/schema"}}},  # data, not a reference: kept
        "$defs": {"a/b": {"type": "string", "minLength": 3}}}
    output = {"type": "object", "properties": {"x": {"$ref": "#/$defs/x"}},
              "$defs": {"x": {"type": "integer"}}}
    doc = _doc(variables, output=output)
    component = doc["components"]["schemas"]["api.orders.api.variables"]
    here = "#/components/schemas/api.orders.api.variables"
    assert _body(doc)["schema"] == {"$ref": here}
    assert component["properties"]["a"] == {"$ref": f"{here}/$defs/a~1b"}
    assert component["properties"]["self"] == {"$ref": here}
    assert component["properties"]["odd"] == {"const": {"$ref": "#/not/a/schema"}}
    assert variables["properties"]["a"] == {"$ref": "#/$defs/a~1b"}  # the prompt's own is untouched
    assert _resolve(doc, component["properties"]["a"]["$ref"]) == {"type": "string", "minLength": 3}
    assert _resolve(doc, component["properties"]["deep"]["$ref"]) == {"$ref": f"{here}/$defs/a~1b"}
    envelope = doc["paths"]["/apis/orders.api"]["post"]["responses"]["200"]["content"]["application/json"]
    output_ref = envelope["schema"]["properties"]["output"]["$ref"]
    assert output_ref == "#/components/schemas/api.orders.api.output"
    # The example follows the references.
    example = _body(doc)["example"]
    assert isinstance(example["a"], str) and len(example["a"]) >= 3


def test_every_api_of_a_document_has_its_own_component() -> None:
    variables = {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}},
                 "$defs": {"a": {"type": "string"}}}
    prompt = PromptVersion(tenant_id="t", name="p", version=1, messages=[], variables=variables, model="m")
    records = [ApiRecord(tenant_id="t", name=n, prompt="p") for n in ("x.y", "x-y", "x_y")]
    doc = openapi.document([(r, prompt) for r in records], "http://gw")
    assert {f"api.{n}.variables" for n in ("x.y", "x-y", "x_y")} <= set(doc["components"]["schemas"])


def test_an_integer_bound_past_64_bits_still_makes_a_document() -> None:
    """minimum 1e20 made the example the int 10**20 + 1, which orjson cannot write: the API's
    document and the tenant's whole catalog were 500s."""
    for schema, shown in (({"type": "integer", "minimum": 1e20}, True),
                          ({"type": "integer", "maximum": -1e30}, True),
                          ({"type": "integer", "exclusiveMinimum": 1e20}, False)):  # 1e20 is not above it
        doc = _doc({"type": "object", "properties": {"n": schema}, "required": ["n"]})
        orjson.dumps(doc)
        assert ("example" in _body(doc)) is shown
    doc = _doc({"type": "object", "properties": {"n": {"type": "integer", "minimum": 9e18}}})
    assert _body(doc)["example"] == {"n": 9 * 10**18 + 1}  # within 64 bits: still an int


def test_examples_are_bounded() -> None:
    began = time.monotonic()
    huge = _doc({"type": "object", "properties": {"t": {"type": "string", "minLength": 2_000_000_000}}})
    assert "example" not in _body(huge) and len(orjson.dumps(huge)) < 10_000
    # A part referring to the next twice, eight deep: 2^8 copies of 40 properties were too many.
    defs: dict[str, Any] = {f"d{i}": {"type": "object", "properties": {
        f"p{j}": {"$ref": f"#/$defs/d{i + 1}"} for j in range(40)}} for i in range(8)}
    defs["d8"] = {"type": "string", "minLength": 100}
    wide = _doc({"type": "object", "properties": {"root": {"$ref": "#/$defs/d0"}}, "$defs": defs})
    assert "example" not in _body(wide) and len(orjson.dumps(wide)) < 100_000
    assert time.monotonic() - began < 5
    fits = _doc({"type": "object", "properties": {"t": {"type": "string", "minLength": 500}}})
    assert len(_body(fits)["example"]["t"]) >= 500
