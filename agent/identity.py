"""What enrollment leaves in the state dir: who this agent is, its token, and the pinned server key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

FILE = "identity.json"


class Identity(NamedTuple):
    agent_id: str
    aggregator: str
    token: str
    public_key: str  # the aggregator's Ed25519 key (base64, raw 32 bytes) that signs commands
    ca_file: str = ""


def load(state_dir: Path) -> Identity | None:
    path = state_dir / FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except PermissionError:
        raise ValueError(
            f"{path} is not readable by this user; give it to the agent's user (chown)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is unreadable ({exc}); run `edgewatch enroll` again") from None
    try:
        return Identity(
            **{k: str(data[k]) for k in ("agent_id", "aggregator", "token", "public_key")},
            ca_file=str(data.get("ca_file", "")),
        )
    except KeyError as exc:
        raise ValueError(f"{path} lacks {exc}; run `edgewatch enroll` again") from None


def save(state_dir: Path, identity: Identity) -> Path:
    """Write the identity readable by its owner only, atomically and durably."""
    from .spool import write_atomically

    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / FILE
    write_atomically(path, json.dumps(identity._asdict(), indent=2).encode() + b"\n")
    return path
