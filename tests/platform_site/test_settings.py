import os
import stat
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from platform_site.keys import load_or_create_ed25519
from tests.processes import ROOT

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "platform_site.settings_production",
    "SECRET_KEY": "x7#Qp2!vLm9@Zr4$Tn8^Wb3&Yc6*Hd1(Kf5)Jg0-Ns2_Ua7+Ve4=Xh9",
    "ALLOWED_HOSTS": "platform.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://platform.example.com",
}


def manage_check(env_overrides: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"}}
    env.update(VAR_DIR=str(tmp_path), **env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_production_settings_pass_check_deploy_with_real_values(tmp_path):
    result = manage_check(PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_real_secret_key(tmp_path):
    result = manage_check({**PRODUCTION, "SECRET_KEY": "short"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_the_ledger_key_is_created_once_with_mode_0600_and_then_reused(tmp_path):
    path = tmp_path / "keys" / "ledger.pem"
    first = load_or_create_ed25519(path)
    assert isinstance(first, Ed25519PrivateKey)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_ed25519(path)
    assert again.public_key().public_bytes_raw() == first.public_key().public_bytes_raw()


def test_a_key_file_that_is_not_ed25519_is_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "wrong.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ValueError, match="Ed25519"):
        load_or_create_ed25519(path)
