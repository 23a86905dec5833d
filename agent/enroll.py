"""``edgewatch enroll URL TOKEN``: trade a one-time enrollment token for this agent's own token.

The aggregator answers ``POST /api/v1/enroll`` with the agent's id, its token and the aggregator's
Ed25519 public key, which the agent pins: commands are accepted only when signed by that key. The
aggregator's TLS certificate is verified (``--ca-file`` for a private CA).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import identity
from .transport import HttpClient, TransportError, Url

ENROLL_PATH = "/api/v1/enroll"


class EnrollError(Exception):
    pass


def enroll(
    url: str, token: str, state_dir: Path, *, name: str = "", ca_file: str = "", timeout: float = 15.0
) -> identity.Identity:
    try:
        Url.parse(url)
    except ValueError as exc:
        raise EnrollError(f"{exc}; give the aggregator's URL, e.g. https://mon.example.com:8443") from None
    body = json.dumps({"token": token, "hostname": os.uname().nodename, "name": name}).encode()
    try:
        with HttpClient(url, timeout=timeout, ca_file=ca_file or None) as client:
            answer = client.request("POST", ENROLL_PATH, body, {"Content-Type": "application/json"})
    except TransportError as exc:
        raise EnrollError(f"cannot reach {url}: {exc}") from None
    try:
        data = json.loads(answer.body)
    except ValueError:
        data = None
    if answer.status != 200:
        detail = data.get("error") if isinstance(data, dict) else None
        raise EnrollError(
            f"the aggregator refused enrollment (HTTP {answer.status}): {detail or 'no reason given'}"
        )
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("agent_id", "token", "public_key")
    ):
        raise EnrollError(
            "the aggregator's answer lacks agent_id, token or public_key; is the URL an edgewatch aggregator?"
        )
    try:
        key = base64.b64decode(data["public_key"], validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise EnrollError("the aggregator's public key is not a base64 Ed25519 key (32 bytes)")
    ca = str(Path(ca_file).resolve()) if ca_file else ""  # the service does not run from this directory
    me = identity.Identity(data["agent_id"], url, data["token"], data["public_key"], ca)
    identity.save(state_dir, me)
    return me


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="edgewatch enroll",
        description="Enroll this host with an aggregator: exchange a one-time enrollment token (made by an "
        "admin in the web UI or with `edgewatch admin add-enrollment`) for this agent's own token, and pin "
        "the aggregator's signing key. Writes STATE_DIR/identity.json.",
    )
    p.add_argument("url", metavar="URL", help="the aggregator, e.g. https://mon.example.com:8443")
    p.add_argument("token", metavar="ENROLLMENT_TOKEN", help="the one-time enrollment token")
    p.add_argument(
        "--state-dir", type=Path, default=Path("/var/lib/edgewatch-agent"), help="agent state directory"
    )
    p.add_argument("--name", default="", help="name for this agent (default: the host name)")
    p.add_argument("--ca-file", default="", help="CA bundle that signed the aggregator's certificate")
    args = p.parse_args(argv)
    try:
        me = enroll(args.url, args.token, args.state_dir, name=args.name, ca_file=args.ca_file)
    except (EnrollError, OSError) as exc:
        print(f"edgewatch enroll: {exc}", file=sys.stderr)
        return 1
    print(f"enrolled as {me.agent_id!r} with {me.aggregator}; identity in {args.state_dir / identity.FILE}")
    print("start the agent: systemctl enable --now edgewatch-agent")
    return 0
