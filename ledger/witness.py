"""`python -m ledger.witness`: a witness that checks the log's consistency and cosigns its checkpoints.

It pins the log's verifier key, remembers the last checkpoint it saw (a small JSON state file), checks that
every new checkpoint is consistent with it (RFC 6962 consistency proof), and only then posts its C2SP
cosignature/v1. Two checkpoints of the same size with different roots are a split view: reported loudly, never
cosigned. Standard library and `cryptography` only, like ledger.verify.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import merkle, notes

SPLIT_VIEW = 3


class WitnessError(Exception):
    """The log cannot be vouched for; the message says why."""


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310  (the operator's own URL)
        return response.read()


def _post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(  # noqa: S310
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise WitnessError(
            f"the log refused the cosignature: {exc.code} {exc.read().decode(errors='replace')}"
        ) from exc


def check_and_cosign(
    *, base_url: str, log_key: str, name: str, key: Ed25519PrivateKey, state: dict, now: int | None = None
) -> dict:
    """Fetch the latest checkpoint, check it against `state`, cosign it; returns the new state."""
    note = _get(f"{base_url}/api/ledger/checkpoint/").decode()
    if not notes.verify_note(note, log_key):
        raise WitnessError("the checkpoint is not signed by the pinned log key")
    body, _signatures = notes.parse_note(note)
    origin, size, root = notes.parse_checkpoint(body)
    seen_size, seen_root = state.get("tree_size", 0), bytes.fromhex(state.get("root_hash", ""))
    if size < seen_size:
        raise WitnessError(f"the log went back from size {seen_size} to {size}")
    if size == seen_size and seen_size and root != seen_root:
        raise WitnessError(
            f"SPLIT VIEW: two checkpoints of size {size} with different roots: {seen_root.hex()} and {root.hex()}"
        )
    if seen_size and size > seen_size:
        query = urllib.parse.urlencode({"first": seen_size, "second": size})
        proof = json.loads(_get(f"{base_url}/api/ledger/proof/consistency/?{query}"))
        hashes = [bytes.fromhex(h) for h in proof["proof"]]
        if not merkle.verify_consistency(seen_size, size, seen_root, root, hashes):
            raise WitnessError(
                f"SPLIT VIEW: the checkpoint of size {size} is not consistent with the one of size {seen_size} "
                "this witness cosigned"
            )
    line = notes.cosign(body, name, key, int(time.time()) if now is None else now)
    _post_json(f"{base_url}/api/ledger/witness/cosign/", {"tree_size": size, "cosignature": line})
    return {"origin": origin, "tree_size": size, "root_hash": root.hex()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger.witness", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the platform, e.g. https://platform.example.com")
    parser.add_argument("--log-key", required=True, help="the log's verifier key, obtained out of band")
    parser.add_argument("--name", required=True, help="this witness's name, as registered with the platform")
    parser.add_argument(
        "--key-file", required=True, type=Path, help="this witness's Ed25519 private key (PEM)"
    )
    parser.add_argument(
        "--state", required=True, type=Path, help="JSON file remembering the last checkpoint seen"
    )
    args = parser.parse_args(argv)
    key = serialization.load_pem_private_key(args.key_file.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        parser.error("--key-file must hold an Ed25519 private key")
    state = json.loads(args.state.read_text()) if args.state.exists() else {}
    try:
        state = check_and_cosign(
            base_url=args.url.rstrip("/"), log_key=args.log_key, name=args.name, key=key, state=state
        )
    except WitnessError as exc:
        print(f"witness: {exc}", file=sys.stderr)
        return SPLIT_VIEW if "SPLIT VIEW" in str(exc) else 1
    args.state.write_text(json.dumps(state))
    print(f"witness: cosigned {state['origin']} at size {state['tree_size']}, root {state['root_hash']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
