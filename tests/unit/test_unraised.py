"""``errors.unraised``: the copy of a kept refusal that is raised in its place, so the kept one
never carries a traceback (a reference cycle through the frames that keep it). Every subclass
copies, whatever its constructor takes."""

from __future__ import annotations

import pytest

from switchboard.access.tokens import TokenRefused
from switchboard.errors import GatewayError, InvalidRequest, PermissionDenied, unraised
from switchboard.mcp.upstream import RpcError


def _raised(error: GatewayError) -> GatewayError:
    try:
        raise error from ValueError("why")
    except GatewayError as caught:
        return caught


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequest("bad value", param="messages[0]", code="invalid_value"),
        PermissionDenied("not yours", code="model_not_allowed"),
        TokenRefused("token_expired", "the token has expired"),  # (code, message)
        RpcError(-32602, "invalid params", {"field": "x"}),  # (rpc_code, message, data)
    ],
)
def test_a_copy_is_the_same_error_never_raised(error: GatewayError) -> None:
    kept = _raised(error)
    copied = unraised(kept)
    assert copied is not kept and type(copied) is type(kept)
    assert copied.to_openai() == kept.to_openai() and copied.status == kept.status
    assert copied.args == kept.args and vars(copied) == vars(kept)
    assert copied.__traceback__ is None and copied.__cause__ is None and copied.__context__ is None
