"""The party's client against a fake transport: keys on disk, refusals on one line, the digest check, and what
it signs and submits. No server, no Django."""

import base64
import json
import os
import stat
import sys
import types
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from federation import client, protocol
from ml.architecture import parameter_shapes, validate_spec
from ml.federated import tensors

SPEC = validate_spec(
    {"input_width": 4, "hidden": [3], "activation": "relu", "task": "classification", "output_width": 2}
)
SCHEMA = {
    "columns": [
        {"name": f"x{i}", "type": "numeric", "impute": 0.0, "center": 0.0, "scale": 1.0} for i in range(4)
    ],
    "target": {"name": "label", "task": "classification", "classes": [0, 1]},
}


def global_tensors() -> tensors.Tensors:
    rng = np.random.default_rng(0)
    return {n: rng.normal(size=s).astype(np.float32) for n, s in parameter_shapes(SPEC).items()}


def federation(**changes) -> dict:
    fed = {
        "id": 7,
        "name": "Hospitals",
        "status": "running",
        "schema": SCHEMA,
        "spec": SPEC,
        "recipe": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "local_epochs": 1, "proximal_mu": 0.0},
        "strategy": "fedavg",
        "options": {},
        "privacy": None,
        "secure_aggregation": False,
        "update_norm_bound": None,
        "max_update_bytes": 1 << 20,
        "rounds": 3,
        "min_parties": 1,
        "current_round": {
            "number": 1,
            "status": "open",
            "global_sha256": tensors.digest(global_tensors()),
            "deadline": None,
            "secagg_roster": None,
        },
        "me": {"party": 3, "status": "admitted"},
    }
    fed.update(changes)
    return fed


def answer(status: int, body=None, headers=None) -> client.Response:
    return client.Response(status, headers or {}, json.dumps(body).encode() if body is not None else b"")


class FakeTransport:
    """Answers from a list of federation states (one per look) and records every request."""

    def __init__(self, states: list[dict], *, model_digest: str | None = None, submit=None, join=None):
        self.states = states
        self.looks = 0
        self.detail = None  # the detail is the state of the latest look (the first before any)
        self.model_digest = model_digest
        self.submit = submit or (lambda fields: answer(201, {"update": 1, "sha256": "x", "entry_seq": 42}))
        self.join_answer = join
        self.requests: list[tuple[str, str, dict]] = []

    def request(self, method, path, *, json_body=None, multipart=None):
        self.requests.append((method, path, multipart or json_body or {}))
        path, _, _query = path.partition("?")
        if path == "/api/federations/7/state/":
            state = self.detail = self.states[min(self.looks, len(self.states) - 1)]
            self.looks += 1
            return answer(200, state)
        if path == "/api/federations/7/":
            return answer(200, self.detail or self.states[0])
        if path.endswith("/model/"):
            t = global_tensors()
            digest = self.model_digest if self.model_digest is not None else tensors.digest(t)
            return client.Response(200, {"x-content-digest": digest}, tensors.encode(t))
        if path.endswith("/updates/"):
            return self.submit(multipart)
        if path.endswith("/join/"):
            return self.join_answer or answer(201, {"party": 3, "status": "pending"})
        if path == "/api/accounts/keys/":
            return answer(201, {"id": 5, "key_id": "abcdef0123456789"})
        if path.startswith("/api/federations/7/rounds/"):
            return answer(200, {"number": 1, "metrics": {"accuracy": 0.5}})
        return answer(404, {"detail": "Not found."})

    def submissions(self) -> list[dict]:
        return [fields for method, path, fields in self.requests if path.endswith("/updates/")]

    def looked(self) -> list[str]:
        """The state looks' query strings, in order."""
        return [path.partition("?")[2] for _, path, _ in self.requests if "/state/" in path]


@dataclass
class FakeResult:
    delta: dict
    num_examples: int
    metrics: dict


@pytest.fixture
def fake_training(monkeypatch):
    """ml.federated.local replaced by a stand-in that returns a fixed delta: these tests are about the client."""
    calls = []

    def train_local(*, spec, global_tensors, X, y, recipe, seed, device="cpu", progress=None):
        calls.append({"seed": seed, "device": device, "global": global_tensors})
        delta = {n: np.full(a.shape, 0.01, dtype=np.float32) for n, a in global_tensors.items()}
        return FakeResult(delta, len(y), {"loss": 0.5, "accuracy": 0.75})

    def task_xy(schema, table):
        X = schema.matrix(table).astype(np.float32)
        return X, np.array(table.numeric["label"], dtype=np.int64)

    fake = types.ModuleType("ml.federated.local")
    fake.train_local, fake.task_xy = train_local, task_xy
    import ml.federated

    monkeypatch.setitem(sys.modules, "ml.federated.local", fake)
    monkeypatch.setattr(ml.federated, "local", fake, raising=False)
    return calls


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "party.pem"
    assert client.main(["keygen", "--key", str(path)]) == 0
    (tmp_path / "party.pem.id").write_text(json.dumps({"key_id": "abcdef0123456789", "id": 5}))
    return path


@pytest.fixture
def data_csv(tmp_path):
    path = tmp_path / "local.csv"
    rows = ["x0,x1,x2,x3,label"] + [f"{i},{i % 3},{i % 5},1,{i % 2}" for i in range(20)]
    path.write_text("\n".join(rows) + "\n")
    return path


def run(keyfile, data_csv, transport, *extra) -> int:
    argv = [
        "run",
        "7",
        "--key",
        str(keyfile),
        "--data",
        str(data_csv),
        "--poll",
        "0",
        "--no-progress",
        *extra,
    ]
    return client.main(argv, transport=transport)


def multipart_fields(body: bytes, content_type: str) -> dict:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True) for part in
            message.iter_parts()}  # fmt: skip


# ----------------------------------------------------------------------------------------------- keys


def test_keygen_writes_a_private_key_only_its_owner_can_read_and_prints_the_public_key(tmp_path, capsys):
    path = tmp_path / "party.pem"
    assert client.main(["keygen", "--key", str(path)]) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    out = capsys.readouterr().out
    assert client.public_pem(key) in out
    assert client.fingerprint(key) in out


def test_keygen_refuses_to_overwrite_an_existing_key(tmp_path, capsys):
    path = tmp_path / "party.pem"
    path.write_text("precious")
    assert client.main(["keygen", "--key", str(path)]) == client.EXIT_USAGE
    assert path.read_text() == "precious"
    assert "refusing to overwrite" in capsys.readouterr().err


def test_keygen_makes_the_key_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        client.keygen(tmp_path / "k.pem")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "k.pem").st_mode) == 0o600


def test_register_key_sends_the_public_key_and_saves_its_id_next_to_the_private_key(tmp_path):
    path = tmp_path / "party.pem"
    client.main(["keygen", "--key", str(path)])
    transport = FakeTransport([federation()])
    assert client.main(["register-key", "--key", str(path), "--name", "lab"], transport=transport) == 0
    method, url, body = transport.requests[-1]
    assert (method, url, body["name"]) == ("POST", "/api/accounts/keys/", "lab")
    assert body["public_key"] == client.public_pem(client.load_key(path))
    saved = tmp_path / "party.pem.id"
    assert json.loads(saved.read_text())["key_id"] == "abcdef0123456789"
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600


def test_join_without_a_registered_key_says_to_register_it_first(tmp_path, capsys):
    path = tmp_path / "party.pem"
    client.main(["keygen", "--key", str(path)])
    assert client.main(["join", "7", "--key", str(path)], transport=FakeTransport([federation()])) == 2
    assert "run `register-key` first" in capsys.readouterr().err


def test_a_refused_join_prints_the_servers_reason_on_one_line_and_exits_3(keyfile, capsys):
    refused = answer(403, {"detail": "this key belongs to someone else", "code": "permission_denied"})
    transport = FakeTransport([federation()], join=refused)
    assert client.main(["join", "7", "--key", str(keyfile)], transport=transport) == client.EXIT_REFUSED
    err = capsys.readouterr().err
    assert err == "platform-fl: refused (403): this key belongs to someone else\n"


def test_field_errors_of_a_400_are_shown_with_their_field():
    response = answer(400, {"key_id": ["This field is required."]})
    assert client.detail_of(response) == "key_id: This field is required."


def test_no_token_is_a_usage_error_naming_the_environment_variable(keyfile, capsys, monkeypatch):
    monkeypatch.delenv("PLATFORM_TOKEN", raising=False)
    assert client.main(["join", "7", "--key", str(keyfile)]) == client.EXIT_USAGE
    assert "PLATFORM_TOKEN" in capsys.readouterr().err


def test_an_unreachable_server_exits_4_with_a_message(keyfile, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    argv = ["join", "7", "--key", str(keyfile), "--server", f"http://127.0.0.1:{port}", "--token", "t"]
    assert client.main(argv) == client.EXIT_UNREACHABLE
    assert "cannot reach" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- the run loop


def test_a_round_is_trained_signed_and_submitted_once_then_the_run_ends_with_the_federation(
    keyfile, data_csv, fake_training, capsys
):
    finished = federation(status="finished")
    transport = FakeTransport([federation(), federation(), finished])
    assert run(keyfile, data_csv, transport) == 0
    (fields,) = transport.submissions()
    payload = fields["update"][1]
    delta = tensors.decode(payload, shapes=parameter_shapes(SPEC), max_bytes=1 << 20)
    sha = tensors.digest(delta)
    message = protocol.update_message(federation=7, round=1, sha256=sha, num_examples=20)
    assert protocol.verify(client.public_raw(client.load_key(keyfile)), message, fields["signature"])
    assert fields["key_id"] == "abcdef0123456789"
    assert json.loads(fields["metrics"]) == {"loss": 0.5, "accuracy": 0.75}
    assert fake_training[0]["seed"] == client.seed_for(0, 1)
    out = capsys.readouterr().out
    assert "round 1: trained on 20 examples (loss 0.5000, accuracy 0.7500)" in out
    assert "accepted (ledger entry #42)" in out
    assert "round 1 aggregated: global model accuracy 0.5000" in out
    assert "federation 7 finished" in out


def test_after_its_update_the_client_holds_its_look_until_the_next_round_and_reports_from_it(
    keyfile, data_csv, fake_training, capsys
):
    aggregating = federation()
    aggregating["current_round"]["status"] = "aggregating"
    finished = federation(status="finished", closed_round={"number": 1, "metrics": {"accuracy": 0.625}})
    transport = FakeTransport([federation(), aggregating, finished])
    assert run(keyfile, data_csv, transport) == 0
    # The first look is answered at once; each one after the update asks to be held until a round after 1.
    assert transport.looked() == [
        "weights=true",
        "weights=true&after=1&wait=25",
        "weights=true&after=1&wait=25",
    ]
    assert "/api/federations/7/rounds/1/" not in [path for _, path, _ in transport.requests]  # no extra GET
    assert "round 1 aggregated: global model accuracy 0.6250" in capsys.readouterr().out


def test_a_global_model_whose_digest_differs_from_the_header_is_refused_and_nothing_is_trained(
    keyfile, data_csv, fake_training, capsys
):
    transport = FakeTransport([federation()], model_digest="0" * 64)
    assert run(keyfile, data_csv, transport) == client.EXIT_DIGEST
    assert fake_training == []
    assert transport.submissions() == []
    assert "refusing to train" in capsys.readouterr().err


def test_weights_brought_by_the_look_are_trained_on_without_a_download(keyfile, data_csv, fake_training):
    fed = federation()
    fed["current_round"]["global_weights"] = base64.b64encode(tensors.encode(global_tensors())).decode()
    transport = FakeTransport([fed, federation(status="finished")])
    assert run(keyfile, data_csv, transport) == 0
    assert not [path for _, path, _ in transport.requests if path.endswith("/model/")]
    (trained,) = fake_training
    assert tensors.digest(trained["global"]) == tensors.digest(global_tensors())
    assert len(transport.submissions()) == 1


def test_weights_brought_by_the_look_that_differ_from_the_published_digest_are_refused(
    keyfile, data_csv, fake_training, capsys
):
    fed = federation()
    other = {n: a + 1 for n, a in global_tensors().items()}
    fed["current_round"]["global_weights"] = base64.b64encode(tensors.encode(other)).decode()
    assert run(keyfile, data_csv, FakeTransport([fed])) == client.EXIT_DIGEST
    assert fake_training == []
    assert "the server sent published " + tensors.digest(global_tensors()) in capsys.readouterr().err

    fed["current_round"]["global_weights"] = "not base64!"
    assert run(keyfile, data_csv, FakeTransport([fed])) == client.EXIT_DIGEST
    assert "unreadable" in capsys.readouterr().err


def test_a_global_model_other_than_the_published_one_is_refused(keyfile, data_csv, fake_training, capsys):
    fed = federation()
    fed["current_round"]["global_sha256"] = "f" * 64  # the header and the bytes agree, the publication not
    assert run(keyfile, data_csv, FakeTransport([fed])) == client.EXIT_DIGEST
    assert fake_training == []
    assert "published " + "f" * 64 in capsys.readouterr().err


def test_a_refused_update_is_reported_with_the_reason_and_the_party_waits_for_the_next_round(
    keyfile, data_csv, fake_training, capsys
):
    refused = lambda fields: answer(400, {"detail": "the update's L2 norm is 12.3; the bound is 5"})  # noqa: E731
    second = federation()
    second["current_round"] = {**second["current_round"], "number": 2}
    transport = FakeTransport(
        [federation(), federation(), second, federation(status="finished")], submit=refused
    )
    assert run(keyfile, data_csv, transport) == 0
    assert len(transport.submissions()) == 2  # round 1 refused once, not retried; round 2 tried
    out = capsys.readouterr().out
    assert "update refused (400): the update's L2 norm is 12.3; the bound is 5" in out


def test_a_second_update_answered_409_is_not_retried(keyfile, data_csv, fake_training, capsys):
    conflict = lambda fields: answer(409, {"detail": "you already submitted an update to round 1"})  # noqa: E731
    transport = FakeTransport([federation()] * 3 + [federation(status="finished")], submit=conflict)
    assert run(keyfile, data_csv, transport) == 0
    assert len(transport.submissions()) == 1
    assert "update refused (409): you already submitted an update to round 1" in capsys.readouterr().out


def test_a_removed_party_stops_with_exit_6(keyfile, data_csv, fake_training, capsys):
    transport = FakeTransport([federation(me={"party": 3, "status": "removed"})])
    assert run(keyfile, data_csv, transport) == client.EXIT_ENDED
    assert "removed your party" in capsys.readouterr().err


def test_a_failed_federation_stops_with_exit_6(keyfile, data_csv, fake_training):
    assert run(keyfile, data_csv, FakeTransport([federation(status="failed")])) == client.EXIT_ENDED


def test_a_pending_party_waits_and_gives_up_after_the_idle_timeout(keyfile, data_csv, fake_training, capsys):
    transport = FakeTransport([federation(me={"party": 3, "status": "pending"})])
    assert run(keyfile, data_csv, transport, "--idle-timeout", "0.01") == client.EXIT_IDLE
    captured = capsys.readouterr()
    assert (
        captured.out.count("waiting for the coordinator to admit your party") == 1
    )  # said once, not per look
    assert "giving up" in captured.err


def test_local_data_without_the_schemas_columns_exits_7_naming_the_column(
    keyfile, tmp_path, fake_training, capsys
):
    bad = tmp_path / "bad.csv"
    bad.write_text("x0,label\n1,0\n2,1\n")
    assert run(keyfile, bad, FakeTransport([federation()])) == client.EXIT_DATA
    assert "x1" in capsys.readouterr().err


def test_an_update_above_the_norm_bound_is_clipped_to_it_before_signing(keyfile, data_csv, fake_training):
    transport = FakeTransport([federation(update_norm_bound=0.02), federation(status="finished")])
    assert run(keyfile, data_csv, transport) == 0
    (fields,) = transport.submissions()
    delta = tensors.decode(fields["update"][1], shapes=parameter_shapes(SPEC), max_bytes=1 << 20)
    assert tensors.l2_norm(delta) == pytest.approx(0.02, rel=1e-5)
    assert "norm_bound" not in fields  # attested only with secure aggregation


def test_the_tamper_hook_of_a_byzantine_simulated_party_changes_what_is_signed(
    keyfile, data_csv, fake_training
):
    transport = FakeTransport([federation(), federation(status="finished")])
    party = client.Party(
        federation=7, key=client.load_key(keyfile), key_id="k", data=data_csv,
        tamper=lambda d: {n: -10 * a for n, a in d.items()},
    )  # fmt: skip
    runner = client.Runner(client.Api(transport), party, say=lambda line: None)
    assert runner.run(poll=0) == 0
    delta = tensors.decode(
        transport.submissions()[0]["update"][1], shapes=parameter_shapes(SPEC), max_bytes=1 << 20
    )
    assert np.allclose(delta["output.bias"], -0.1)


def test_the_multipart_body_carries_each_field_and_the_file():
    body, content_type = client.multipart_encode(
        {"update": ("u.safetensors", b"\x00\x01bytes", "application/octet-stream"), "num_examples": "12"}
    )
    fields = multipart_fields(body, content_type)
    assert fields == {"update": b"\x00\x01bytes", "num_examples": b"12"}


def test_the_secure_aggregation_key_is_published_signed_and_the_same_after_a_restart(keyfile):
    key = client.load_key(keyfile)
    one = client.secagg_private(key, federation=7, round_number=2)
    again = client.secagg_private(client.load_key(keyfile), federation=7, round_number=2)
    other_round = client.secagg_private(key, federation=7, round_number=3)
    assert client.x25519_public_b64(one) == client.x25519_public_b64(again)
    assert client.x25519_public_b64(one) != client.x25519_public_b64(other_round)
    assert len(base64.b64decode(client.x25519_public_b64(one))) == 32


def test_the_client_never_imports_django():
    import subprocess

    code = "import sys, federation.client; sys.exit(any(m.startswith('django') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_http_transport_sends_the_token_keeps_one_connection_and_survives_the_server_closing_it():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            seen.append((self.path, self.headers["Authorization"], self.client_address[1]))
            body = json.dumps({"detail": "no such federation"}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if len(seen) == 2:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = client.Api(client.HttpTransport(f"http://127.0.0.1:{server.server_port}", "secret"))
        for _ in range(3):
            with pytest.raises(client.ApiError) as refused:
                api.federation(7)
            assert (refused.value.status, refused.value.detail) == (404, "no such federation")
    finally:
        server.shutdown()
        server.server_close()
    assert [path for path, _, _ in seen] == ["/api/federations/7/"] * 3
    assert {auth for _, auth, _ in seen} == {"Bearer secret"}
    ports = [port for _, _, port in seen]
    assert ports[0] == ports[1] != ports[2]  # kept alive, then a new connection after the server closed it


def test_status_prints_the_federation_its_round_and_the_callers_submissions(tmp_path, capsys):
    class WithSubmissions(FakeTransport):
        def request(self, method, path, **kwargs):
            if path.endswith("/me/submissions/"):
                return answer(200, {"updates": [{"round": 1, "sha256": "ab"}], "rejections": []})
            return super().request(method, path, **kwargs)

    assert client.main(["status", "7"], transport=WithSubmissions([federation()])) == 0
    out = capsys.readouterr().out
    assert "federation 7 'Hospitals': running, 3 rounds" in out
    assert "round 1: open" in out and "you: party 3 (admitted)" in out and '"sha256": "ab"' in out
