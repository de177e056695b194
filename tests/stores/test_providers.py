"""The provider store: providers, credentials, models and server secrets, on both backends."""

from __future__ import annotations

import pytest

from switchboard.stores.protocols import CredentialRecord, ModelRecord, ProviderRecord
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_providers_credentials_and_models_round_trip(backend: Backend) -> None:
    store = backend.stores.providers
    assert await store.create_provider(ProviderRecord(
        name="acme", type="openai", api_base="http://127.0.0.1:9/v1", options={"organization": "org-1"},
        headers={"x-team": "a"}, timeouts={"total": 30.0}, max_connections=8))
    assert not await store.create_provider(ProviderRecord(name="acme", type="openai"))
    got = await store.get_provider("acme")
    assert got is not None and (got.type, got.options, got.headers, got.timeouts, got.max_connections) == (
        "openai", {"organization": "org-1"}, {"x-team": "a"}, {"total": 30.0}, 8)
    sealed = CredentialRecord(id="cred_a", provider="acme", mask="sk-…aaaa", ciphertext="v1.x.y")
    await store.add_credential(sealed)
    await store.add_credential(CredentialRecord(id="cred_b", provider="acme", mask="env:K", ref="env:K"))
    assert [c.id for c in await store.credentials("acme")] == ["cred_a", "cred_b"]
    assert await store.create_model(ModelRecord(name="m1", provider="acme", model="gpt-4o-mini",
                                                info={"max_input_tokens": 1000}, require_approval=True))
    assert not await store.create_model(ModelRecord(name="m1", provider="acme", model="x"))
    model = await store.get_model("m1")
    assert model is not None and model.require_approval and model.info == {"max_input_tokens": 1000}
    state = await store.load()
    assert [p.name for p in state.providers] == ["acme"] and [m.name for m in state.models] == ["m1"]
    assert [c.id for c in state.credentials] == ["cred_a", "cred_b"]
    # A provider in use is not deleted; its model first, then the provider and its credentials.
    assert await store.delete_provider("acme") == "in_use"
    assert await store.update_model(ModelRecord(name="m1", provider="acme", model="gpt-4o"))
    assert (await store.get_model("m1")).model == "gpt-4o"  # type: ignore[union-attr]
    assert await store.delete_model("m1") is not None and await store.delete_model("m1") is None
    assert await store.delete_credential("acme", "cred_a")
    assert not await store.delete_credential("other", "cred_b")  # another provider's id
    assert await store.delete_provider("acme") == "deleted"
    assert await store.delete_provider("acme") == "missing"
    assert await store.credentials("acme") == [] and await store.get_provider("acme") is None
    assert not await store.update_provider(ProviderRecord(name="acme", type="openai"))
    # Nothing is written for a provider that is not stored: a credential, a model naming it as
    # a stored provider; a provider of the configuration file is not in the table.
    assert not await store.add_credential(CredentialRecord(id="cred_c", provider="acme", mask="…"))
    assert not await store.create_model(ModelRecord(name="m2", provider="acme", model="x"),
                                        provider_stored=True)
    assert await store.credentials("acme") == [] and await store.get_model("m2") is None
    assert await store.create_model(ModelRecord(name="m3", provider="from-yaml", model="x"))
    assert await store.delete_model("m3") is not None


async def test_a_provider_is_created_with_its_first_credential_in_one_write(backend: Backend) -> None:
    """Both or neither: no delete can find the provider without its credential (and refuse
    the create half-done), and a name already taken stores no credential under it."""
    store = backend.stores.providers
    first = CredentialRecord(id="cred_1", provider="acme", mask="sk-…aaaa", ciphertext="v1.x.y")
    assert await store.create_provider(ProviderRecord(name="acme", type="openai"), first)
    assert [c.id for c in await store.credentials("acme")] == ["cred_1"]
    again = CredentialRecord(id="cred_2", provider="acme", mask="sk-…bbbb", ciphertext="v1.x.z")
    assert not await store.create_provider(ProviderRecord(name="acme", type="openai"), again)
    assert [c.id for c in await store.credentials("acme")] == ["cred_1"]
    assert await store.delete_provider("acme") == "deleted"
    assert await store.credentials("acme") == []


async def test_server_secrets_first_writer_wins_and_reseal_rewrites_what_changed(backend: Backend) -> None:
    store = backend.stores.providers
    assert await store.server_secret("hashing") is None
    assert await store.init_server_secret("hashing", "v1.old.first") == "v1.old.first"
    peer = (await backend.peer()).providers
    assert await peer.init_server_secret("hashing", "v1.old.second") == "v1.old.first"
    await store.create_provider(ProviderRecord(name="p", type="openai"))
    await store.add_credential(CredentialRecord(id="c1", provider="p", mask="…", ciphertext="v1.old.c1"))
    await store.add_credential(CredentialRecord(id="c2", provider="p", mask="…", ciphertext="v1.new.c2"))
    await store.add_credential(CredentialRecord(id="c3", provider="p", mask="env:X", ref="env:X"))

    def cred(record: CredentialRecord) -> str:
        assert record.ciphertext is not None
        return record.ciphertext.replace("v1.old.", "v1.new.")

    assert await store.reseal(cred, lambda name, sealed: sealed.replace("v1.old.", "v1.new.")) == (1, 1)
    assert await store.reseal(cred, lambda name, sealed: sealed) == (0, 0)  # idempotent
    assert [c.ciphertext for c in await peer.credentials("p")] == ["v1.new.c1", "v1.new.c2", None]
    assert await peer.server_secret("hashing") == "v1.new.first"
