"""The credentials of an outgoing HTTP endpoint, as configured: basic auth, a bearer token, headers.

``[[remote_write]]`` and the ``alertmanager`` channel take the same three optional fields::

    basic_auth = { username = "edgewatch", password = "..." }
    bearer_token = "..."            # or basic_auth, not both
    headers = { X-Scope-OrgID = "tenant-1" }

`parse_credentials` turns them into request headers; a wrong one is a ``ValueError`` of one line
that names the field. `masked` shows them in the API and logs: names kept, secrets never.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

MASK = "****"


@dataclass(frozen=True)
class Credentials:
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # every header, auth included
    username: str = ""  # basic auth's user name (shown), when set
    kind: str = ""  # "", "basic" or "bearer"
    custom: tuple[str, ...] = ()  # names of the configured extra headers

    def masked(self) -> dict[str, Any]:
        """The configuration fit to show: no password, token or header value."""
        out: dict[str, Any] = {"auth": self.kind or "none", "headers": dict.fromkeys(self.custom, MASK)}
        if self.kind == "basic":
            out["username"] = self.username
        return out


def parse_credentials(table: Mapping[str, Any], reserved: Collection[str] = ()) -> Credentials:
    """The ``basic_auth``, ``bearer_token`` and ``headers`` fields of ``table`` as headers.

    ``reserved``: header names (lower case) edgewatch sets itself, refused in ``headers``."""
    headers = table.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError('headers: must be a table of strings, e.g. { X-Scope-OrgID = "tenant-1" }')
    if bad := sorted(h for h in headers if h.lower() in {*reserved, "authorization"}):
        what = "basic_auth or bearer_token" if bad[0].lower() == "authorization" else "edgewatch"
        raise ValueError(f"headers: {bad[0]} is set by {what}; remove it from headers")
    out = dict(headers)
    basic, bearer = table.get("basic_auth"), table.get("bearer_token")
    if basic is not None and bearer is not None:
        raise ValueError("bearer_token: give basic_auth or bearer_token, not both")
    if bearer is not None:
        if not isinstance(bearer, str) or not bearer:
            raise ValueError("bearer_token: must be a non-empty string in quotes")
        out["Authorization"] = f"Bearer {bearer}"
        return Credentials(out, kind="bearer", custom=tuple(headers))
    if basic is not None:
        if (
            not isinstance(basic, dict)
            or set(basic) - {"username", "password"}
            or not isinstance(basic.get("username"), str)
            or not isinstance(basic.get("password", ""), str)
            or not basic["username"]
        ):
            raise ValueError('basic_auth: must be { username = "...", password = "..." }')
        pair = f"{basic['username']}:{basic.get('password', '')}".encode()
        out["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return Credentials(out, basic["username"], "basic", tuple(headers))
    return Credentials(out, custom=tuple(headers))
