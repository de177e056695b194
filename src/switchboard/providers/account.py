"""Objects of the provider account named in a translated request (docs/access.md, "Objects of the
provider account").

The gateway calls a provider with its own stored credential: one account, or one cloud identity,
shared by every caller. A request field that names something living there (a file uploaded to
Gemini's Files API or Anthropic's, an Azure search index read with the resource's managed identity)
or a storage URI that identity can read (``gs://`` on Vertex AI) would make the provider read it on
the gateway's authority: another tenant's data, or the operator's own storage. So such a field is
accepted only when the attempt carries the caller's own provider credential
(``Target.own_account``, set by the invoke terminal), whose account is the caller's, or when the
operator opted the provider entry in (``allow_account_objects``: every caller may read all the
account holds); otherwise the adapter refuses it with :func:`refusal` before anything is sent.
The Responses API's own check of its fields is ``http/responses/request.py`` (``account_object``);
the Anthropic pass-through's, of the Files API sources its decoder noted, is ``pipeline/native.py``.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import UnsupportedParameter
from switchboard.providers.target import Target

# Azure OpenAI "On your data": search indexes, Cosmos DB, ... read with credentials the caller
# chooses, among them the resource's managed identity (the gateway's Azure identity).
DATA_SOURCES = "data_sources"


def refusal(
    param: str, what: str, target: Target, instead: str = "send the data inline instead"
) -> UnsupportedParameter:
    """The 400 for ``param`` naming ``what`` of the provider account, saying why and what would
    make it acceptable on this deployment."""
    if target.allow_caller_credentials:
        remedy = "it is accepted only with your own provider credential (caller credentials)"
    else:
        remedy = (f"model '{target.name}' does not take callers' own provider credentials, so it is "
                  "not accepted here")
    return UnsupportedParameter(
        f"'{param}' names {what}, which provider type '{target.provider_type}' would read with the "
        f"gateway's credential, in the provider account it shares among all its callers: {remedy}; "
        f"{instead}",
        param=param,
    )


def check(target: Target, param: str, what: str) -> None:
    """Refuse ``param`` unless the attempt carries the caller's own credential."""
    if not target.own_account:
        raise refusal(param, what, target)


def check_data_sources(body: dict[str, Any], target: Target) -> None:
    """Azure OpenAI's ``data_sources`` ("On your data") in an OpenAI-shaped body: whatever their
    authentication, an endpoint and index of the caller's choice are queried by the provider
    resource, which may use its own identity (``system_assigned_managed_identity``, ...)."""
    if DATA_SOURCES in body and not target.own_account:
        what = 'data sources (Azure "On your data")'
        raise refusal(DATA_SOURCES, what, target, "send the request without it")
