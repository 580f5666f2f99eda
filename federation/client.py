"""The party's client: `python -m federation.client` (or the `platform-fl` console script), run at a party's
own site. It talks only to the platform's REST API with an API token, and never imports Django.

    platform-fl keygen        [--key party.pem]                   a new Ed25519 private key (mode 0600)
    platform-fl register-key  [--key party.pem] [--name N] [--organization ID]
    platform-fl join FEDERATION [--key party.pem]
    platform-fl run  FEDERATION --data local.csv [--key party.pem] [--device cuda]
    platform-fl status FEDERATION

The server and token come from `--server`/`PLATFORM_URL` (default http://127.0.0.1:8000) and
`--token`/`PLATFORM_TOKEN`. `run` loops: wait for an open round this party has not submitted to, download the
global weights and check their digest, train on the local file (CUDA when present), clip and noise the update
when the federation asks for differential privacy, mask it when secure aggregation is on, sign it and submit;
until the federation finishes. Every refusal prints the server's reason on one line.

Exit codes: 0 done (the federation finished; or the command succeeded), 1 unexpected error, 2 bad usage or
an unreadable local file (key, key id), 3 refused by the server (the reason is printed), 4 the server cannot
be reached or keeps failing, 5 the global model's digest does not match what the platform published, 6 the
federation failed or this party was removed, 7 the local data does not fit the federation's schema, 8 nothing
happened for --idle-timeout seconds.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import secrets
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from federation import protocol

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4
EXIT_DIGEST = 5
EXIT_ENDED = 6
EXIT_DATA = 7
EXIT_IDLE = 8

DEFAULT_SERVER = "http://127.0.0.1:8000"
DEFAULT_KEY = "party.pem"
USER_AGENT = "platform-fl/1"


# ------------------------------------------------------------------------------------------------- errors


class ClientError(Exception):
    """An error the client reports on one line and exits with `exit_code`."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(ClientError):
    exit_code = EXIT_USAGE


class ApiError(ClientError):
    """The server answered with an error: 4xx is a refusal (its `detail` is the message), 5xx a failure."""

    def __init__(self, status: int, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(
            f"refused ({status}): {detail}" if status < 500 else f"server error ({status}): {detail}"
        )
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        self.exit_code = EXIT_REFUSED if status < 500 else EXIT_UNREACHABLE


class Unreachable(ClientError):
    exit_code = EXIT_UNREACHABLE


class DigestMismatch(ClientError):
    exit_code = EXIT_DIGEST


class FederationEnded(ClientError):
    exit_code = EXIT_ENDED


class DataError(ClientError):
    exit_code = EXIT_DATA


class Idle(ClientError):
    exit_code = EXIT_IDLE


# ------------------------------------------------------------------------------------------------- transport


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


# A multipart field: a text value, or (filename, bytes, content type) for a file.
Field = str | tuple[str, bytes, str]


class Transport(Protocol):
    """How the client reaches the API: HTTP by default; the simulation drives the same loop in-process."""

    def request(
        self, method: str, path: str, *, json_body: Any = None, multipart: dict[str, Field] | None = None
    ) -> Response:
        """Send one request (path starting with /api/) and return the answer whatever its status; raise
        Unreachable when no answer came."""
        ...


def multipart_encode(fields: dict[str, Field]) -> tuple[bytes, str]:
    """multipart/form-data body and its content type."""
    boundary = f"platform-fl-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data, content_type = value
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            )
        else:
            head, data = f'Content-Disposition: form-data; name="{name}"\r\n\r\n', str(value).encode()
        parts.append(f"--{boundary}\r\n".encode() + head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class HttpTransport:
    """The API over HTTP(S) with the standard library, `Authorization: Bearer <token>`, on one kept-alive
    connection (opened again when the server closed it)."""

    def __init__(self, server: str, token: str, *, timeout: float = 60.0) -> None:
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UsageError(f"--server must be an http(s) URL, not {server!r}")
        self.server = server.rstrip("/")
        self.prefix = parsed.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._parsed = parsed
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            p = self._parsed
            cls = http.client.HTTPSConnection if p.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(p.hostname, p.port, timeout=self.timeout)
        return self._conn

    def request(
        self, method: str, path: str, *, json_body: Any = None, multipart: dict[str, Field] | None = None
    ) -> Response:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if multipart is not None:
            data, headers["Content-Type"] = multipart_encode(multipart)
        elif json_body is not None:
            data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        for attempt in (1, 2):  # a kept-alive connection the server has closed fails once; then a new one
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=data, headers=headers)
                answer = conn.getresponse()
                body = answer.read()
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                self._conn = None
                retry_safe = isinstance(
                    exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError
                )
                if attempt == 1 and retry_safe:
                    continue
                raise Unreachable(f"cannot reach {self.server}: {exc}") from None
            if answer.will_close:
                conn.close()
                self._conn = None
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, body)
        raise Unreachable(f"cannot reach {self.server}")  # not reached


def detail_of(response: Response) -> str:
    """The server's reason in one line: `detail`, or the field errors of a 400, or the start of the body."""
    body = response.json()
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            return body["detail"]
        parts = []
        for name, messages in body.items():
            text = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            parts.append(text if name in ("detail", "non_field_errors") else f"{name}: {text}")
        if parts:
            return " | ".join(parts)
    text = response.body[:200].decode(errors="replace").strip().replace("\n", " ")
    return text or f"HTTP {response.status}"


class Api:
    """The REST calls the client makes; any non-2xx answer raises ApiError with the server's reason."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def call(self, method: str, path: str, **kwargs: Any) -> Response:
        response = self.transport.request(method, path, **kwargs)
        if not 200 <= response.status < 300:
            retry = response.headers.get("retry-after")
            raise ApiError(
                response.status,
                detail_of(response),
                retry_after=float(retry) if retry and retry.isdigit() else None,
            )
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, path, **kwargs).json()

    def federation(self, fid: int) -> dict:
        return self.json("GET", f"/api/federations/{fid}/")

    def federation_state(self, fid: int, *, after: int | None = None, wait: float = 0) -> dict:
        """The lean look: status, error, the current and the last aggregated round and `me`, without the settings;
        held by the server up to `wait` seconds until a round after `after` opens (or the federation ends, or
        the party changes). An open round for this party brings its weights along (`global_weights`)."""
        held = f"&after={after}&wait={wait:g}" if after is not None and wait > 0 else ""
        return self.json("GET", f"/api/federations/{fid}/state/?weights=true{held}")

    def round(self, fid: int, number: int) -> dict:
        return self.json("GET", f"/api/federations/{fid}/rounds/{number}/")

    def join(self, fid: int, key_id: str) -> dict:
        return self.json("POST", f"/api/federations/{fid}/join/", json_body={"key_id": key_id})

    def model(self, fid: int, number: int) -> tuple[bytes, str]:
        response = self.call("GET", f"/api/federations/{fid}/rounds/{number}/model/")
        return response.body, response.headers.get("x-content-digest", "")

    def secagg(self, fid: int, number: int) -> dict:
        return self.json("GET", f"/api/federations/{fid}/rounds/{number}/secagg/")

    def secagg_publish(self, fid: int, number: int, body: dict) -> dict:
        return self.json("POST", f"/api/federations/{fid}/rounds/{number}/secagg/", json_body=body)

    def submit(self, fid: int, number: int, fields: dict[str, Field]) -> dict:
        return self.json("POST", f"/api/federations/{fid}/rounds/{number}/updates/", multipart=fields)

    def submissions(self, fid: int) -> Any:
        return self.json("GET", f"/api/federations/{fid}/me/submissions/")

    def register_key(self, body: dict) -> dict:
        return self.json("POST", "/api/accounts/keys/", json_body=body)


# ------------------------------------------------------------------------------------------------- keys


def key_id_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".id")


def write_private(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 and write `data`; refuse when it exists (never overwrite a key)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; refusing to overwrite it (move it away first)") from None
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)  # whatever the umask


def keygen(path: Path) -> Ed25519PrivateKey:
    """A new Ed25519 key written to `path` as unencrypted PKCS#8 PEM, mode 0600."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(path, pem)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the key {path}: {exc.strerror} (make one with `keygen`)") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 key")
    return key


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PrivateKey) -> str:
    """The platform's key id: the first 8 bytes of the raw public key's SHA-256, in hex."""
    return hashlib.sha256(public_raw(key)).hexdigest()[:16]


def load_key_id(key_path: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return json.loads(key_id_path(key_path).read_text())["key_id"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(
            f"no key id for {key_path}: run `register-key` first (it writes {key_id_path(key_path)}), "
            "or pass --key-id"
        ) from None


def secagg_private(key: Ed25519PrivateKey, *, federation: int, round_number: int) -> X25519PrivateKey:
    """This party's X25519 key for one round's masking, derived from its signing key (HKDF-SHA256 with the
    federation and round as context), so a party that restarts mid-round masks with the key it published."""
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    info = f"fl-secagg-x25519/v1 federation={federation} round={round_number}".encode()
    raw = HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(seed)
    return X25519PrivateKey.from_private_bytes(raw)


def x25519_public_b64(private: X25519PrivateKey) -> str:
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


# ------------------------------------------------------------------------------------------------- the party


@dataclass
class Step:
    """What one look at the federation led to."""

    state: str  # finished | waiting | submitted | refused
    message: str = ""
    round: int | None = None
    metrics: dict = field(default_factory=dict)
    after: int | None = None  # the next look may be held until a round after this one opens


Tamper = Callable[[dict], dict]


@dataclass
class Party:
    """One party of one federation: its signing key, its registered key id and its local data."""

    federation: int
    key: Ed25519PrivateKey
    key_id: str
    data: Path | None = None
    xy: tuple[Any, Any] | None = None  # (X, y) given directly instead of a file
    device: str = ""
    seed: int = 0  # training's seed is seed_for(seed, round): fixed seeds and mini-batch order
    noise_seed: int | None = None  # None: fresh randomness for the privacy noise (set only in simulations)
    tamper: Tamper | None = None  # the simulation's byzantine parties only: alters the update before signing


def seed_for(base: int, round_number: int) -> int:
    """The local training seed of one round: `--seed` (give each party its own) plus 1000 per round, as
    `ml.federated.simulate.plain_fedavg_loop(seed=0)` seeds its party `base`, so the two give the same updates."""
    return base + 1000 * (round_number - 1)


class Runner:
    """The run loop, one `step()` at a time: a step reads the federation and, when an open round awaits this
    party's update, trains, signs and submits it."""

    def __init__(
        self, api: Api, party: Party, *, say: Callable[[str], None] = print, bar: bool = False
    ) -> None:
        self.api = api
        self.party = party
        self.say = say
        self.bar = bar
        self.done: set[int] = set()  # rounds this party submitted to (or was refused in)
        self._xy: tuple[Any, Any] | None = party.xy
        self._reported: set[int] = set()
        self.last_seen: dict = {}  # the federation's state as the last step read it
        self._settings: dict | None = None  # the federation's detail, read once: its settings never change

    # --------------------------------------------------------------------------------------------- loop

    def run(self, *, poll: float = 2.0, idle_timeout: float = 0, retries: int = 8, hold: float = 25.0) -> int:
        """Steps until the federation finishes; returns the exit code (raises ClientError on the way). A look
        that waits for the next round is held by the server up to `hold` seconds (answered the moment the round
        opens); other waits (admission, the other parties' masking keys) ask again every `poll` seconds."""
        last_change = time.monotonic()
        failures = 0
        waiting_said = ""
        after: int | None = None
        while True:
            looked_at = time.monotonic()
            try:
                step = self.step(after=after, wait=hold)
                failures = 0
            except (Unreachable, ApiError) as exc:
                transient = isinstance(exc, Unreachable) or exc.status >= 500 or exc.status == 429
                failures += 1
                if not transient or failures > retries:
                    raise
                pause = getattr(exc, "retry_after", None) or min(30.0, poll * 2**failures)
                self.say(f"{exc.message}; trying again in {pause:.0f} s")
                time.sleep(pause)
                continue
            after = step.after
            self._report_closed(self.last_seen)  # the rounds aggregated since this party submitted to them
            if step.state == "finished":
                self.say(step.message)
                return EXIT_OK
            if step.state in ("submitted", "refused"):
                self.say(step.message)
                last_change = time.monotonic()
                waiting_said = ""
                continue
            if step.message != waiting_said:
                self.say(step.message)
                waiting_said = step.message
            if idle_timeout and time.monotonic() - last_change > idle_timeout:
                raise Idle(f"nothing to do for {idle_timeout:.0f} s ({step.message}); giving up")
            # A held look that came back with nothing new (or a server that does not hold) waits out the rest
            # of `poll`; so does every wait that cannot be held.
            time.sleep(max(0.0, poll - (time.monotonic() - looked_at)))

    def step(self, *, after: int | None = None, wait: float = 0) -> Step:
        """One look (held up to `wait` seconds until a round after `after` opens, when both are given) and what
        it leads to: training and submitting when an open round awaits this party's update."""
        p = self.party
        fed = self.api.federation_state(p.federation, after=after, wait=wait)
        self.last_seen = fed
        status = fed.get("status")
        if status == "finished":
            return Step("finished", f"federation {p.federation} finished")
        if status == "failed":
            why = f": {fed['error']}" if fed.get("error") else ""
            raise FederationEnded(f"federation {p.federation} failed{why}; nothing more to train")
        me = fed.get("me")
        if not me:
            raise ApiError(403, f"you are not a party of federation {p.federation}: run `join` first")
        if me.get("status") == "removed":
            raise FederationEnded(f"the coordinator removed your party from federation {p.federation}")
        current = fed.get("current_round")
        seen = int(current["number"]) if current else 0
        if me.get("status") != "admitted":
            return Step("waiting", "waiting for the coordinator to admit your party", after=seen)
        if status != "running" or not current or current.get("status") != "open":
            return Step("waiting", "waiting for the next round to open", after=seen)
        number = int(current["number"])
        if number in self.done:
            return Step(
                "waiting", f"round {number}: submitted; waiting for the next round", number, after=number
            )
        if self._settings is None:
            self._settings = self.api.federation(p.federation)
        fed = {**self._settings, **fed}  # the settings, with the state just read
        peers: dict[int, str] | None = None
        if fed.get("secure_aggregation"):
            peers = self._secagg_peers(fed, number, int(me["party"]))
            if peers is None:
                return Step("waiting", f"round {number}: waiting for the other parties' masking keys")
        return self._train_and_submit(fed, number, int(me["party"]), peers)

    # --------------------------------------------------------------------------------------------- the round

    def _secagg_peers(self, fed: dict, number: int, me: int) -> dict[int, str] | None:
        """The other roster parties' X25519 keys once all are published (publishing ours first), else None."""
        p = self.party
        roster = [int(x) for x in (fed["current_round"].get("secagg_roster") or [])]
        if me not in roster:
            return None
        state = self.api.secagg(p.federation, number)
        keys = {int(k): v for k, v in (state.get("keys") or {}).items()}
        if me not in keys:
            public = x25519_public_b64(secagg_private(p.key, federation=p.federation, round_number=number))
            message = protocol.secagg_key_message(federation=p.federation, round=number, public_key=public)
            self.api.secagg_publish(
                p.federation,
                number,
                {"key_id": p.key_id, "public_key": public, "signature": protocol.sign(p.key, message)},
            )
            return None
        if not state.get("ready"):
            return None
        return {party: k for party, k in keys.items() if party != me and party in roster}

    def _train_and_submit(self, fed: dict, number: int, me: int, peers: dict[int, str] | None) -> Step:
        import numpy as np

        from ml.architecture import parameter_count, parameter_shapes, validate_spec
        from ml.federated import tensors

        p = self.party
        spec = validate_spec(fed["spec"])
        X, y = self._data(fed)
        published = fed["current_round"].get("global_sha256")
        inline = fed["current_round"].get("global_weights")
        if inline:  # the look brought the weights along
            data, header_digest, said = inline, published, "sent"
        else:
            data, header_digest = self.api.model(p.federation, number)
            said = f"said {header_digest or 'nothing'} (X-Content-Digest) and"
        limit = 4 * parameter_count(spec) + (1 << 16)
        try:
            data = base64.b64decode(data, validate=True) if isinstance(data, str) else data
            global_tensors = tensors.decode(data, shapes=parameter_shapes(spec), max_bytes=limit)
        except ValueError as exc:  # not base64, or tensors.UpdateError
            raise DigestMismatch(f"round {number}: the global model is unreadable: {exc}") from None
        got = tensors.digest(global_tensors)
        if got != header_digest or got != published:
            raise DigestMismatch(
                f"round {number}: the global model's digest is {got}, but the server {said} published "
                f"{published}; refusing to train"
            )
        from ml.federated import local

        result = local.train_local(
            spec=spec,
            global_tensors=global_tensors,
            X=X,
            y=y,
            recipe=fed["recipe"],
            seed=seed_for(p.seed, number),
            device=p.device or "auto",
            progress=self._progress(number) if self.bar else None,
        )
        delta, notes = result.delta, []
        privacy = fed.get("privacy")
        if privacy:
            from ml.federated import privacy as dp

            delta = dp.clip_and_noise(
                delta,
                clip_norm=float(privacy["clip_norm"]),
                noise_multiplier=float(privacy["noise_multiplier"]),
                seed=p.noise_seed if p.noise_seed is not None else secrets.randbits(63),
            )
            notes.append(f"DP clip {privacy['clip_norm']:g}, noise x{privacy['noise_multiplier']:g}")
        bound = fed.get("update_norm_bound")
        norm = tensors.l2_norm(delta)
        if bound and norm > float(bound):  # enforced here, so the update is not refused at the door
            delta = {
                n: (a.astype(np.float64) * (float(bound) / norm)).astype(np.float32) for n, a in delta.items()
            }
            notes.append(f"clipped from norm {norm:.3g} to the bound {float(bound):g}")
        if p.tamper is not None:
            delta = p.tamper(delta)
        masked = peers is not None
        fields: dict[str, Field]
        if masked:
            from ml.federated import secagg

            mask = secagg.mask(
                delta,
                num_examples=result.num_examples,
                me=me,
                private=secagg_private(p.key, federation=p.federation, round_number=number),
                peers=peers,
                round_salt=round_salt(p.federation, number, published),
                norm_bound=float(bound) if bound else None,
            )
            payload, sha = secagg.encode_masked(mask), secagg.masked_digest(mask)
        else:
            payload, sha = tensors.encode(delta), tensors.digest(delta)
        norm_bound = float(bound) if masked and bound else None
        message = protocol.update_message(
            federation=p.federation,
            round=number,
            sha256=sha,
            num_examples=result.num_examples,
            masked=masked,
            norm_bound=norm_bound,
        )
        metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}
        fields = {
            "update": ("update.safetensors", payload, "application/octet-stream"),
            "num_examples": str(result.num_examples),
            "metrics": json.dumps(metrics),
            "key_id": p.key_id,
            "signature": protocol.sign(p.key, message),
        }
        if norm_bound is not None:
            fields["norm_bound"] = repr(norm_bound)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k in ("loss", "accuracy", "rmse"))
        head = f"round {number}: trained on {result.num_examples} examples ({shown})"
        if notes:
            head += f" [{'; '.join(notes)}]"
        try:
            answer = self.api.submit(p.federation, number, fields)
        except ApiError as exc:
            if exc.status not in (400, 409):
                raise
            self.done.add(number)  # the same update would be refused again; wait for the next round
            return Step(
                "refused", f"{head}; update refused ({exc.status}): {exc.detail}", number, metrics, number
            )
        self.done.add(number)
        entry = answer.get("entry_seq")
        where = f" (ledger entry #{entry})" if entry is not None else ""
        return Step("submitted", f"{head}; update {sha[:12]} accepted{where}", number, metrics, number)

    def _data(self, fed: dict) -> tuple[Any, Any]:
        if self._xy is None:
            from ml.features import FeatureError, FeatureSchema
            from ml.federated import local
            from ml.tabular import TabularError, read_table

            path = self.party.data
            if path is None:
                raise UsageError("give the local data file with --data")
            fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"
            try:
                schema = FeatureSchema.from_json(fed["schema"])
                self._xy = local.task_xy(schema, read_table(str(path), fmt=fmt))
            except (TabularError, FeatureError, ValueError) as exc:
                raise DataError(f"{path}: {exc}") from None
            if len(self._xy[1]) == 0:
                raise DataError(f"{path}: no rows to train on")
        return self._xy

    def _report_closed(self, fed: dict) -> None:
        """One line per round aggregated since this party submitted to it: the global model's metrics."""
        current = fed.get("current_round") or {}
        number = current.get("number")
        if number is None:
            return
        finished = fed.get("status") == "finished"
        candidates = [n for n in sorted(self.done) if n not in self._reported and (n < number or finished)]
        closed = fed.get("closed_round") or {}
        for n in candidates:
            self._reported.add(n)
            if closed.get("number") == n:
                info = closed  # the look has it: no request
            else:
                try:
                    info = self.api.round(self.party.federation, n)
                except ClientError:
                    continue
            metrics = info.get("metrics") or {}
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, int | float))
            if shown:
                self.say(f"round {n} aggregated: global model {shown}")

    def _progress(self, number: int) -> Callable[[int, int], None]:
        def show(step: int, steps: int) -> None:
            width, fraction = 30, step / max(1, steps)
            filled = int(width * fraction)
            sys.stderr.write(
                f"\rround {number} [{'#' * filled}{'.' * (width - filled)}] {step}/{steps} batches"
            )
            if step >= steps:
                sys.stderr.write("\r" + " " * (width + 40) + "\r")
            sys.stderr.flush()

        return show


def round_salt(federation: int, number: int, global_sha256: str | None) -> bytes:
    """What every party mixes into its pairwise masks for one round: the same bytes for all of them."""
    return f"fl-secagg-salt/v1 federation={federation} round={number} global={global_sha256}".encode()


# ------------------------------------------------------------------------------------------------- commands


def _api(args: argparse.Namespace) -> Api:
    if getattr(args, "transport", None) is not None:
        return Api(args.transport)
    token = args.token or os.environ.get("PLATFORM_TOKEN", "")
    if not token:
        raise UsageError("no API token: pass --token or set PLATFORM_TOKEN (make one on your profile page)")
    return Api(HttpTransport(args.server or os.environ.get("PLATFORM_URL", DEFAULT_SERVER), token))


def cmd_keygen(args: argparse.Namespace) -> int:
    key = keygen(Path(args.key))
    print(public_pem(key), end="")
    print(
        f"key id {fingerprint(key)}; private key written to {args.key} (mode 0600). Register it: register-key"
    )
    return EXIT_OK


def cmd_register_key(args: argparse.Namespace) -> int:
    path = Path(args.key)
    key = load_key(path)
    target = key_id_path(path)
    if target.exists():
        raise UsageError(
            f"{target} exists: this key is registered already (remove the file to register again)"
        )
    body: dict[str, Any] = {
        "name": args.name or f"platform-fl {fingerprint(key)}",
        "public_key": public_pem(key),
    }
    if args.organization is not None:
        body["organization"] = args.organization
    answer = _api(args).register_key(body)
    write_private(target, json.dumps({"key_id": answer["key_id"], "id": answer.get("id")}).encode())
    print(f"registered key {answer['key_id']} (id {answer.get('id')}); saved to {target}")
    return EXIT_OK


def cmd_join(args: argparse.Namespace) -> int:
    key_id = load_key_id(Path(args.key), args.key_id)
    answer = _api(args).join(args.federation, key_id)
    print(
        f"asked to join federation {args.federation} as party {answer.get('party')}: {answer.get('status')}"
    )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    api = _api(args)
    fed = api.federation(args.federation)
    current = fed.get("current_round") or {}
    me = fed.get("me") or {}
    print(f"federation {fed['id']} {fed.get('name', '')!r}: {fed.get('status')}, {fed.get('rounds')} rounds")
    if current:
        print(
            f"round {current.get('number')}: {current.get('status')}, global {current.get('global_sha256')}"
        )
    print(f"you: party {me.get('party')} ({me.get('status')})" if me else "you: not a party")
    if me:
        print(json.dumps(api.submissions(args.federation), indent=1))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    path = Path(args.key)
    party = Party(
        federation=args.federation,
        key=load_key(path),
        key_id=load_key_id(path, args.key_id),
        data=Path(args.data),
        device=args.device,
        seed=args.seed,
    )
    if not party.data.is_file():
        raise UsageError(f"no such data file: {party.data}")
    runner = Runner(_api(args), party, bar=sys.stderr.isatty() and not args.no_progress)
    return runner.run(poll=args.poll, idle_timeout=args.idle_timeout)


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server", default=None, help=f"the platform's URL (env PLATFORM_URL; {DEFAULT_SERVER})"
    )
    common.add_argument("--token", default=None, help="an API token (env PLATFORM_TOKEN)")
    common.add_argument(
        "--key", default=os.environ.get("PLATFORM_FL_KEY", DEFAULT_KEY), help="private key PEM"
    )
    top = argparse.ArgumentParser(
        prog="platform-fl",
        description="A federated-learning party's client: keys, joining, and the training loop.",
        epilog="Exit codes: 0 done, 1 unexpected error, 2 usage or local file, 3 refused by the server, "
        "4 server unreachable or failing, 5 global model digest mismatch, 6 federation failed or party "
        "removed, 7 local data does not fit the schema, 8 idle timeout.",
    )
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("keygen", parents=[common], help="write a new Ed25519 private key (mode 0600)")
    reg = sub.add_parser("register-key", parents=[common], help="register the public key with the platform")
    reg.add_argument("--name", default="")
    reg.add_argument("--organization", type=int, default=None, help="register for this organization")
    join = sub.add_parser("join", parents=[common], help="ask to join a federation")
    join.add_argument("federation", type=int)
    join.add_argument("--key-id", default=None)
    status = sub.add_parser("status", parents=[common], help="the federation, its round and your submissions")
    status.add_argument("federation", type=int)
    run = sub.add_parser("run", parents=[common], help="train and submit every round until the end")
    run.add_argument("federation", type=int)
    run.add_argument("--data", required=True, help="the local CSV (or .jsonl) with the schema's columns")
    run.add_argument("--key-id", default=None)
    run.add_argument("--device", default="", help="cpu, cuda, cuda:1 (default: CUDA when present)")
    run.add_argument("--seed", type=int, default=0, help="base of the local training seeds")
    run.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the federation")
    run.add_argument(
        "--idle-timeout", type=float, default=0, help="give up after this long with nothing to do"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return top


COMMANDS = {
    "keygen": cmd_keygen,
    "register-key": cmd_register_key,
    "join": cmd_join,
    "status": cmd_status,
    "run": cmd_run,
}


def main(argv: list[str] | None = None, *, transport: Transport | None = None) -> int:
    """The command line; `transport` replaces HTTP (tests, in-process runs)."""
    args = parser().parse_args(argv)
    args.transport = transport
    try:
        return COMMANDS[args.command](args)
    except ClientError as exc:
        print(f"platform-fl: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("platform-fl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
