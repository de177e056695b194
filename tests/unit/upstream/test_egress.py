"""Egress rules (upstream/egress.py): which addresses a tenant's upstream may reach, names judged
on the addresses they resolve to, the operator's exceptions, and the configuration's checks."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from switchboard.config.schema import EgressConfig
from switchboard.errors import InvalidRequest
from switchboard.upstream.egress import Egress, EgressPolicy, EgressRefused


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
])
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    assert not Egress().permits(ipaddress.ip_address(address))
    with pytest.raises(EgressRefused, match="not a public address"):
        Egress().check_host(address if ":" not in address else f"[{address}]")


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert Egress().permits(ipaddress.ip_address(address))
    Egress().check_host(address)


def test_the_operators_networks_and_names_pass() -> None:
    egress = Egress(["10.20.0.0/16", "192.168.1.7", "Billing.Internal", "*.corp.example", "fd00::/8"])
    assert egress.permits(ipaddress.ip_address("10.20.3.4"))
    assert not egress.permits(ipaddress.ip_address("10.21.0.1"))
    assert egress.permits(ipaddress.ip_address("192.168.1.7"))
    assert egress.permits(ipaddress.ip_address("fd12::1"))
    assert egress.names("billing.internal.") and egress.names("BILLING.internal")
    assert egress.names("api.corp.example") and egress.names("a.b.corp.example")
    assert not egress.names("corp.example") and not egress.names("evilcorp.example")
    egress.check_host("10.20.0.9")
    with pytest.raises(EgressRefused):
        egress.check_host("10.21.0.9")
    egress.check_host("billing.internal")  # names are judged once resolved, not here


@pytest.mark.asyncio(loop_scope="session")
async def test_a_name_is_judged_on_what_it_resolves_to() -> None:
    with pytest.raises(EgressRefused, match="resolves only to addresses that are not public"):
        await Egress().resolver().resolve("localhost", 80)
    allowed = Egress(["localhost"]).resolver()
    found = await allowed.resolve("localhost", 80)
    assert found and all(not ipaddress.ip_address(r["host"]).is_global for r in found)
    by_network = await Egress(["127.0.0.0/8"]).resolver().resolve("localhost", 80)
    assert {r["host"] for r in by_network} <= {"127.0.0.1"}
    await allowed.close()


def test_only_what_the_platform_admin_registered_for_the_default_tenant_is_exempt() -> None:
    policy = EgressPolicy(EgressConfig())
    assert policy.guard(None, by_platform_admin=True) is None
    assert policy.guard("default", by_platform_admin=True) is None
    # A tenant or team admin of the default tenant is not the operator.
    assert isinstance(policy.guard("default", by_platform_admin=False), Egress)
    assert isinstance(policy.guard("acme", by_platform_admin=True), Egress)
    assert isinstance(policy.guard("acme", by_platform_admin=False), Egress)
    opened = EgressPolicy(EgressConfig(allow_tenant_private_networks=True))
    assert opened.guard("acme", by_platform_admin=False) is None
    assert opened.guard("default", by_platform_admin=False) is None
    policy.check_registered("default", "url", "http://127.0.0.1:9/", by_platform_admin=True)
    policy.check_registered("acme", "url", "http://localhost:9/", by_platform_admin=False)  # a name: later
    policy.check_registered("acme", "url", "https://api.example.com/", by_platform_admin=False)
    for tenant, by_platform_admin in (("acme", True), ("default", False)):
        with pytest.raises(InvalidRequest) as refused:
            policy.check_registered(tenant, "url", "http://[::1]:9/", by_platform_admin=by_platform_admin)
        error = refused.value
        assert (error.status, error.code, error.param) == (400, "upstream_address_refused", "url")
        assert "egress.allowed_hosts" in error.message


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not/a/network", "a*.example", "*.*.example", "",
                                   "two words"])
def test_bad_allowed_hosts_are_refused_at_start(entry: str) -> None:
    with pytest.raises(ValidationError):
        EgressConfig(allowed_hosts=[entry])
