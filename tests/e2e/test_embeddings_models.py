"""Embeddings, models and legacy completions through the gateway."""

from __future__ import annotations

import openai
import pytest

from tests.servers import Mock, captured, new_marker


def test_embeddings_default_base64_decoded_by_sdk(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    assert [d.index for d in resp.data] == [0, 1]
    assert len(resp.data[0].embedding) == 8
    assert resp.data[0].embedding != resp.data[1].embedding
    assert resp.usage.prompt_tokens == 2


def test_embeddings_float_and_dimensions(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(
        model="text-embedding-3-small", input="hello", encoding_format="float", dimensions=16
    )
    assert len(resp.data[0].embedding) == 16
    assert all(-1.0 <= x <= 1.0 for x in resp.data[0].embedding)


@pytest.mark.parametrize("dimensions", [3073, 10**8, 2**64 - 1])
def test_the_mock_refuses_more_dimensions_than_any_model_has(client: openai.OpenAI, dimensions: int) -> None:
    """It built such a vector: 10**8 held gigabytes (the built-in mock runs in the gateway's
    process), 2**64 - 1 was its 500. It answers as OpenAI does a value out of range."""
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=dimensions)
    assert "'dimensions': expected an integer from 1 to 3072" in refused.value.message
    widest = client.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=3072,
                                      encoding_format="float")
    assert len(widest.data[0].embedding) == 3072


def test_embeddings_refuse_a_model_the_catalog_knows_as_another_mode(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    # gpt-4o-mini is a chat model in the catalog: its provider would be sent an embeddings call.
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="gpt-4o-mini", input=f"hello mock:capture={marker}")
    assert refused.value.code == "model_mode_mismatch" and refused.value.param == "model"
    assert refused.value.message.endswith(
        "the model 'gpt-4o-mini' is a chat model; embeddings needs a model of mode 'embedding'")
    assert captured(mock_upstream, marker, timeout=0.5) == []  # nothing was sent


def test_embeddings_pass_unknown_fields_through_as_chat_does(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    # Like /v1/chat/completions: an OpenAI-type upstream gets the fields the gateway does not
    # know (and judges them); the gateway's own drop_params is never sent.
    marker = new_marker()
    client.embeddings.create(model="text-embedding-3-small", input=f"hello mock:capture={marker}",
                             extra_body={"vendor_extension": {"kept": True}, "drop_params": True})
    [seen] = captured(mock_upstream, marker)
    assert seen["body"]["vendor_extension"] == {"kept": True} and "drop_params" not in seen["body"]


async def test_async_embeddings(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.embeddings.create(model="text-embedding-3-small", input="async")
    assert len(resp.data) == 1


def test_models_lists_configured_names(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert ids == {
        "gpt-4o-mini",
        "text-embedding-3-small",
        "gpt-3.5-turbo-instruct",
        "misconfigured",
        "unreachable",
        "slow-model",
        "impatient-model",
    }
    assert client.models.retrieve("gpt-4o-mini").owned_by == "local-openai"


def test_model_retrieve_unknown_is_not_found(client: openai.OpenAI) -> None:
    try:
        client.models.retrieve("nope")
    except openai.NotFoundError as exc:
        assert exc.status_code == 404
    else:
        raise AssertionError("expected NotFoundError")


def test_legacy_completions(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=50)
    assert resp.choices[0].text == "Hello from the Switchboard mock. You said: Say hi"
    assert resp.usage is not None and resp.usage.total_tokens > 0


def test_legacy_completions_stream(client: openai.OpenAI) -> None:
    stream = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True)
    text = "".join(c.choices[0].text for c in stream if c.choices)
    assert text == "Hello from the Switchboard mock. You said: Say hi"
