"""Unit tests for analyticbot_ops.tls: dev CA and leaf, status, domain checks, bootstrap, certbot helpers, install."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from analyticbot_ops import files, tls
from analyticbot_ops.errors import BadInput, OpsError

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FILES = ("ca.crt", "ca.key", "fullchain.pem", "privkey.pem")


# --- helpers -------------------------------------------------------------------------------------------------------


def load_chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(tls_dir: Path) -> dict[str, bytes]:
    return {name: (tls_dir / name).read_bytes() for name in FILES}


def backups(tls_dir: Path) -> list[Path]:
    backup_dir = tls_dir / ".backup"
    return sorted(backup_dir.iterdir()) if backup_dir.exists() else []


def write_key(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def sans_of(cert: x509.Certificate) -> list[x509.GeneralName]:
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "tls"


@pytest.fixture
def dev(tls_dir: Path) -> tls.DevCertResult:
    return tls.ensure_dev_certificates(tls_dir, ["bot.local", "10.1.2.3"], now=T0)


@pytest.fixture
def other_pair(tmp_path: Path) -> Path:
    """A second, independent CA + leaf, standing in for a certificate certbot obtained."""
    src = tmp_path / "src"
    tls.ensure_dev_certificates(src, ["bot.example.com"], now=T0)
    return src


# --- ensure_dev_certificates ---------------------------------------------------------------------------------------


def test_fresh_creation_reports_created(dev: tls.DevCertResult, tls_dir: Path) -> None:
    assert dev.ca_created and dev.leaf_created
    assert dev.backups == ()
    assert dev.fullchain == tls_dir / "fullchain.pem"
    assert dev.privkey == tls_dir / "privkey.pem"
    assert dev.ca_cert == tls_dir / "ca.crt"
    assert dev.ca_key == tls_dir / "ca.key"
    assert "update-ca-certificates" in dev.trust_instructions
    assert str(tls_dir / "ca.crt") in dev.trust_instructions


def test_fresh_creation_file_modes(dev: tls.DevCertResult, tls_dir: Path) -> None:
    assert mode(tls_dir) == 0o700
    assert mode(tls_dir / "ca.key") == 0o600
    assert mode(tls_dir / "privkey.pem") == 0o600
    assert mode(tls_dir / "ca.crt") == 0o644
    assert mode(tls_dir / "fullchain.pem") == 0o644
    # No temp files are left behind by the atomic writes.
    assert sorted(p.name for p in tls_dir.iterdir()) == sorted(FILES)


def test_fresh_creation_keys_are_p256(dev: tls.DevCertResult, tls_dir: Path) -> None:
    for name in ("ca.key", "privkey.pem"):
        assert isinstance(load_key(tls_dir / name).curve, ec.SECP256R1)
    for cert in load_chain(tls_dir / "fullchain.pem"):
        public = cert.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert isinstance(public.curve, ec.SECP256R1)


def test_fresh_ca_is_a_pathlen0_ca_for_ten_years(dev: tls.DevCertResult, tls_dir: Path) -> None:
    ca = load_chain(tls_dir / "ca.crt")[0]
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "AnalyticBot Dev CA"
    assert tls.lifetime(ca) == timedelta(days=3650)
    assert ca.subject == ca.issuer


def test_fresh_leaf_extensions_and_lifetime(dev: tls.DevCertResult, tls_dir: Path) -> None:
    leaf, ca = load_chain(tls_dir / "fullchain.pem")
    assert tls.lifetime(leaf) <= timedelta(days=366)
    assert tls.lifetime(leaf) == timedelta(days=365)
    assert leaf.not_valid_before_utc <= T0 < leaf.not_valid_after_utc
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest


def test_fresh_leaf_sans_cover_defaults_and_names(dev: tls.DevCertResult, tls_dir: Path) -> None:
    leaf = load_chain(tls_dir / "fullchain.pem")[0]
    sans = sans_of(leaf)
    assert x509.DNSName("localhost") in sans
    assert x509.IPAddress(ipaddress.ip_address("127.0.0.1")) in sans
    assert x509.IPAddress(ipaddress.ip_address("::1")) in sans
    assert x509.DNSName("bot.local") in sans
    # A configured IP becomes an IP SAN, not a DNS name that no client would match.
    assert x509.IPAddress(ipaddress.ip_address("10.1.2.3")) in sans
    assert x509.DNSName("10.1.2.3") not in sans
    assert dev.names == ("localhost", "127.0.0.1", "::1", "bot.local", "10.1.2.3")


def test_fullchain_is_leaf_then_ca_and_verifies(dev: tls.DevCertResult, tls_dir: Path) -> None:
    chain = load_chain(tls_dir / "fullchain.pem")
    ca = load_chain(tls_dir / "ca.crt")[0]
    assert len(chain) == 2
    assert chain[1] == ca
    assert chain[0] != ca
    chain[0].verify_directly_issued_by(ca)  # raises if the leaf was not signed by the CA
    assert tls.chain_verifies(chain)
    assert tls.key_matches(chain[0], load_key(tls_dir / "privkey.pem"))
    assert tls.key_matches(ca, load_key(tls_dir / "ca.key"))


def test_second_call_keeps_files_byte_identical(dev: tls.DevCertResult, tls_dir: Path) -> None:
    before = snapshot(tls_dir)
    again = tls.ensure_dev_certificates(tls_dir, ["bot.local", "10.1.2.3"], now=T0 + timedelta(days=10))
    assert not again.ca_created and not again.leaf_created
    assert not again.changed
    assert again.backups == ()
    assert snapshot(tls_dir) == before
    assert backups(tls_dir) == []


def test_subset_of_names_keeps_leaf(dev: tls.DevCertResult, tls_dir: Path) -> None:
    before = snapshot(tls_dir)
    again = tls.ensure_dev_certificates(tls_dir, ["BOT.local."], now=T0)
    assert not again.leaf_created
    assert snapshot(tls_dir) == before


def test_new_name_reissues_leaf_keeps_ca_and_backs_up(dev: tls.DevCertResult, tls_dir: Path) -> None:
    before = snapshot(tls_dir)
    again = tls.ensure_dev_certificates(tls_dir, ["bot.local", "10.1.2.3", "api.local"], now=T0)
    assert again.leaf_created and not again.ca_created
    assert "api.local" in again.reason
    after = snapshot(tls_dir)
    assert after["ca.crt"] == before["ca.crt"]
    assert after["ca.key"] == before["ca.key"]
    assert after["fullchain.pem"] != before["fullchain.pem"]
    assert after["privkey.pem"] != before["privkey.pem"]
    assert x509.DNSName("api.local") in sans_of(load_chain(tls_dir / "fullchain.pem")[0])
    saved = {p.name.split(".pem.")[0] + ".pem": p.read_bytes() for p in backups(tls_dir)}
    assert saved == {"fullchain.pem": before["fullchain.pem"], "privkey.pem": before["privkey.pem"]}
    assert set(again.backups) == set(backups(tls_dir))
    assert mode(tls_dir / ".backup") == 0o700
    assert all(p.name.endswith("Z") for p in backups(tls_dir))
    # The backup of a private key is as private as the key.
    assert mode(next(p for p in backups(tls_dir) if p.name.startswith("privkey"))) == 0o600


def test_leaf_near_expiry_is_reissued_ca_kept(dev: tls.DevCertResult, tls_dir: Path) -> None:
    before = snapshot(tls_dir)
    later = T0 + timedelta(days=340)
    again = tls.ensure_dev_certificates(tls_dir, ["bot.local", "10.1.2.3"], now=later)
    assert again.leaf_created and not again.ca_created
    assert snapshot(tls_dir)["ca.crt"] == before["ca.crt"]
    assert tls.days_left(load_chain(tls_dir / "fullchain.pem")[0], later) >= 364


def test_leaf_with_31_days_left_is_kept(dev: tls.DevCertResult, tls_dir: Path) -> None:
    before = snapshot(tls_dir)
    leaf = load_chain(tls_dir / "fullchain.pem")[0]
    moment = leaf.not_valid_after_utc - timedelta(days=31, hours=1)
    assert not tls.ensure_dev_certificates(tls_dir, ["bot.local", "10.1.2.3"], now=moment).leaf_created
    assert snapshot(tls_dir) == before


def test_swapped_leaf_key_reissues_leaf(dev: tls.DevCertResult, tls_dir: Path) -> None:
    write_key(tls_dir / "privkey.pem")
    again = tls.ensure_dev_certificates(tls_dir, ["bot.local", "10.1.2.3"], now=T0)
    assert again.leaf_created and not again.ca_created
    assert tls.key_matches(load_chain(tls_dir / "fullchain.pem")[0], load_key(tls_dir / "privkey.pem"))


def test_broken_ca_is_reissued_with_leaf_and_backed_up(dev: tls.DevCertResult, tls_dir: Path) -> None:
    old_ca_key = (tls_dir / "ca.key").read_bytes()
    write_key(tls_dir / "ca.key")
    swapped = (tls_dir / "ca.key").read_bytes()
    again = tls.ensure_dev_certificates(tls_dir, ["bot.local"], now=T0)
    assert again.ca_created and again.leaf_created
    assert (tls_dir / "ca.key").read_bytes() not in (old_ca_key, swapped)
    assert swapped in [p.read_bytes() for p in backups(tls_dir)]
    leaf, ca = load_chain(tls_dir / "fullchain.pem")
    assert ca == load_chain(tls_dir / "ca.crt")[0]
    assert tls.issued_by(leaf, ca)


def test_unreadable_fullchain_is_reissued_after_backup(dev: tls.DevCertResult, tls_dir: Path) -> None:
    (tls_dir / "fullchain.pem").write_text("not a certificate\n")
    again = tls.ensure_dev_certificates(tls_dir, ["bot.local"], now=T0)
    assert again.leaf_created
    assert b"not a certificate\n" in [p.read_bytes() for p in backups(tls_dir)]


def test_modes_are_restored_on_kept_files(dev: tls.DevCertResult, tls_dir: Path) -> None:
    os.chmod(tls_dir / "privkey.pem", 0o644)
    os.chmod(tls_dir, 0o755)
    tls.ensure_dev_certificates(tls_dir, ["bot.local"], now=T0)
    assert mode(tls_dir / "privkey.pem") == 0o600
    assert mode(tls_dir) == 0o700


@pytest.mark.parametrize("days", [0, 30, 367, 800])
def test_days_out_of_range_is_bad_input(tls_dir: Path, days: int) -> None:
    with pytest.raises(BadInput, match="--days"):
        tls.ensure_dev_certificates(tls_dir, days=days, now=T0)
    assert not tls_dir.exists()


@pytest.mark.parametrize("name", ["", "bad name.local", "a..local", "-x.local", "a.*.local"])
def test_bad_dev_name_is_bad_input(tls_dir: Path, name: str) -> None:
    with pytest.raises(BadInput):
        tls.ensure_dev_certificates(tls_dir, [name], now=T0)
    assert not tls_dir.exists()


def test_single_string_is_one_name_not_characters(tls_dir: Path) -> None:
    result = tls.ensure_dev_certificates(tls_dir, "proxy", now=T0)
    assert "proxy" in result.names
    assert "p" not in result.names


def test_chown_to_proxy_user_when_root(monkeypatch: pytest.MonkeyPatch, tls_dir: Path) -> None:
    calls: list[tuple[object, int, int]] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "chown", lambda path, uid, gid: calls.append((Path(path).name, uid, gid)))
    monkeypatch.setattr(os, "fchown", lambda fd, uid, gid: calls.append(("fd", uid, gid)))
    tls.ensure_dev_certificates(tls_dir, owner_uid=4242, owner_gid=4343, now=T0)
    chowned = {name for name, _, _ in calls}
    assert {"tls", "ca.crt", "fullchain.pem", "privkey.pem"} <= chowned
    assert all((uid, gid) == (4242, 4343) for _, uid, gid in calls)
    # The proxy never needs the CA key, so it is not handed to the proxy's user.
    assert "ca.key" not in chowned


def test_no_chown_when_not_root(monkeypatch: pytest.MonkeyPatch, tls_dir: Path) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "chown", lambda *args: calls.append(args))
    monkeypatch.setattr(os, "fchown", lambda *args: calls.append(args))
    result = tls.ensure_dev_certificates(tls_dir, now=T0)
    assert result.leaf_created
    assert calls == []
    assert mode(tls_dir / "privkey.pem") == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another user")
def test_files_really_owned_by_proxy_user_when_root(dev: tls.DevCertResult, tls_dir: Path) -> None:
    for name in ("fullchain.pem", "privkey.pem", "ca.crt"):
        assert (tls_dir / name).stat().st_uid == 10001
        assert (tls_dir / name).stat().st_gid == 10001
    assert tls_dir.stat().st_uid == 10001
    assert (tls_dir / "ca.key").stat().st_uid == 0


def test_trust_instructions_cover_debian_curl_browsers() -> None:
    text = tls.trust_instructions(Path("/x/ca.crt"))
    assert "cp /x/ca.crt /usr/local/share/ca-certificates/analyticbot-dev.crt" in text
    assert "update-ca-certificates" in text
    assert "curl --cacert /x/ca.crt" in text
    assert "Import /x/ca.crt" in text


# --- certificate_status --------------------------------------------------------------------------------------------


def test_status_ok(dev: tls.DevCertResult, tls_dir: Path) -> None:
    status = tls.certificate_status(tls_dir, now=T0)
    assert status.ok
    assert status.problems == ()
    assert status.key_matches and status.chain_ok
    assert status.chain_length == 2
    assert not status.self_signed
    assert status.days_left == 364
    assert status.subject == "CN=bot.local"
    assert status.issuer == "CN=AnalyticBot Dev CA"
    assert status.sans == ("localhost", "127.0.0.1", "::1", "bot.local", "10.1.2.3")
    assert status.not_after - status.not_before == timedelta(days=365)


def test_status_low_days_is_not_ok(dev: tls.DevCertResult, tls_dir: Path) -> None:
    status = tls.certificate_status(tls_dir, now=T0 + timedelta(days=350))
    assert not status.ok
    assert 0 <= status.days_left < 30
    assert "expires in" in status.problems[0]
    # A lower warning threshold accepts the same certificate.
    assert tls.certificate_status(tls_dir, warn_days=7, now=T0 + timedelta(days=350)).ok


def test_status_expired(dev: tls.DevCertResult, tls_dir: Path) -> None:
    status = tls.certificate_status(tls_dir, now=T0 + timedelta(days=400))
    assert not status.ok
    assert status.days_left < 0
    assert any("expired" in p for p in status.problems)
    assert status.key_matches and status.chain_ok


def test_status_key_mismatch(dev: tls.DevCertResult, tls_dir: Path) -> None:
    write_key(tls_dir / "privkey.pem")
    status = tls.certificate_status(tls_dir, now=T0)
    assert not status.key_matches
    assert not status.ok
    assert status.chain_ok


def test_status_broken_chain(dev: tls.DevCertResult, other_pair: Path, tls_dir: Path) -> None:
    leaf = (tls_dir / "fullchain.pem").read_bytes().split(b"-----END CERTIFICATE-----\n")[0]
    foreign_ca = (other_pair / "ca.crt").read_bytes()
    (tls_dir / "fullchain.pem").write_bytes(leaf + b"-----END CERTIFICATE-----\n" + foreign_ca)
    status = tls.certificate_status(tls_dir, now=T0)
    assert status.chain_length == 2
    assert not status.chain_ok
    assert not status.ok
    assert status.key_matches


def test_status_lone_leaf_misses_intermediate(dev: tls.DevCertResult, tls_dir: Path) -> None:
    leaf = load_chain(tls_dir / "fullchain.pem")[0]
    (tls_dir / "fullchain.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    status = tls.certificate_status(tls_dir, now=T0)
    assert not status.chain_ok
    assert any("intermediate" in p for p in status.problems)


def test_status_missing_fullchain_is_bad_input(tls_dir: Path) -> None:
    expected = f"no certificate at {tls_dir / 'fullchain.pem'}; run `invoke tls.dev` or `invoke tls.prod`"
    with pytest.raises(BadInput, match=re.escape(expected)):
        tls.certificate_status(tls_dir)


def test_status_missing_key_is_bad_input(dev: tls.DevCertResult, tls_dir: Path) -> None:
    (tls_dir / "privkey.pem").unlink()
    with pytest.raises(BadInput, match=re.escape(f"no private key at {tls_dir / 'privkey.pem'}")):
        tls.certificate_status(tls_dir, now=T0)


def test_status_garbage_is_bad_input(dev: tls.DevCertResult, tls_dir: Path) -> None:
    (tls_dir / "fullchain.pem").write_text("hello\n")
    with pytest.raises(BadInput, match="no PEM certificate"):
        tls.certificate_status(tls_dir, now=T0)


def test_status_as_dict_is_json_with_iso_dates(dev: tls.DevCertResult, tls_dir: Path) -> None:
    status = tls.certificate_status(tls_dir, now=T0)
    data = json.loads(json.dumps(tls.status_as_dict(status)))
    assert datetime.fromisoformat(data["not_after"]) == status.not_after
    assert datetime.fromisoformat(data["not_before"]) == status.not_before
    assert data["ok"] is True
    assert data["sans"] == list(status.sans)
    assert data["path"] == str(tls_dir / "fullchain.pem")


def test_days_left_and_expiry_helpers(dev: tls.DevCertResult, tls_dir: Path) -> None:
    leaf = load_chain(tls_dir / "fullchain.pem")[0]
    assert tls.days_left(leaf, leaf.not_valid_after_utc - timedelta(days=2, hours=1)) == 2
    assert tls.days_left(leaf, leaf.not_valid_after_utc + timedelta(hours=1)) == -1
    assert tls.is_expired(leaf, leaf.not_valid_after_utc)
    assert not tls.is_expired(leaf, leaf.not_valid_after_utc - timedelta(seconds=1))
    assert tls.is_expired(leaf, leaf.not_valid_before_utc - timedelta(seconds=1))
    with pytest.raises(ValueError):
        tls.days_left(leaf, datetime(2026, 1, 1))


# --- validate_domain -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("bot.example.com", "bot.example.com"),
        ("Bot.Example.COM", "bot.example.com"),
        ("bot.example.com.", "bot.example.com"),
        ("  a-b.co.uk ", "a-b.co.uk"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        (".".join(["a" * 63] * 3 + ["b" * 61]), ".".join(["a" * 63] * 3 + ["b" * 61])),
        ("1password.com", "1password.com"),
    ],
)
def test_validate_domain_accepts(given: str, expected: str) -> None:
    assert tls.validate_domain(given) == expected


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("", "empty"),
        (".", "empty"),
        ("localhost", "localhost"),
        ("api.localhost", "localhost"),
        ("127.0.0.1", "IP address"),
        ("::1", "IP address"),
        ("[::1]", "IP address"),
        ("foo", "single-label"),
        ("-a.com", "invalid label"),
        ("a-.com", "invalid label"),
        ("a..com", "invalid label"),
        ("a_b.com", "invalid label"),
        ("bad name.com", "contains white space"),
        ("bücher.de", "invalid label"),
        ("*.a.com", "wildcard"),
        ("a" * 64 + ".com", "longer than 63"),
        (".".join(["a" * 62] * 4) + ".com", "longer than 253"),
        ("1.2.3.4.5", "all-numeric"),
        ("example.test", "reserved .test"),
        ("x.local", "reserved .local"),
        ("x.internal", "reserved .internal"),
        ("x.example", "reserved .example"),
        ("x.invalid", "reserved .invalid"),
    ],
)
def test_validate_domain_refuses(given: str, why: str) -> None:
    with pytest.raises(BadInput, match=re.escape(why)) as caught:
        tls.validate_domain(given)
    assert "\n" not in str(caught.value)


def test_validate_domain_allows_test_tlds_when_asked() -> None:
    assert tls.validate_domain("example.test", allow_test_tlds=True) == "example.test"
    assert tls.validate_domain("Proxy.AnalyticBot.test", allow_test_tlds=True) == "proxy.analyticbot.test"
    # The switch is for reserved TLDs only; localhost and IPs stay refused.
    with pytest.raises(BadInput):
        tls.validate_domain("localhost", allow_test_tlds=True)
    with pytest.raises(BadInput):
        tls.validate_domain("127.0.0.1", allow_test_tlds=True)


# --- bootstrap -----------------------------------------------------------------------------------------------------


def test_bootstrap_writes_short_lived_self_signed(tls_dir: Path) -> None:
    assert tls.write_bootstrap_certificate(tls_dir, "proxy.analyticbot.test", now=T0) is True
    chain = load_chain(tls_dir / "fullchain.pem")
    assert len(chain) == 1
    cert = chain[0]
    assert tls.issued_by(cert, cert)
    assert tls.lifetime(cert) == timedelta(days=1)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert sans_of(cert) == [x509.DNSName("proxy.analyticbot.test")]
    assert tls.key_matches(cert, load_key(tls_dir / "privkey.pem"))
    assert mode(tls_dir / "privkey.pem") == 0o600
    assert mode(tls_dir / "fullchain.pem") == 0o644
    status = tls.certificate_status(tls_dir, warn_days=0, now=T0)
    assert status.self_signed and status.chain_ok and status.ok


def test_bootstrap_never_overwrites(tls_dir: Path) -> None:
    assert tls.write_bootstrap_certificate(tls_dir, "a.example.com", now=T0)
    before = {n: (tls_dir / n).read_bytes() for n in ("fullchain.pem", "privkey.pem")}
    assert tls.write_bootstrap_certificate(tls_dir, "b.example.com", now=T0) is False
    assert {n: (tls_dir / n).read_bytes() for n in ("fullchain.pem", "privkey.pem")} == before


def test_bootstrap_keeps_dev_certificates(dev: tls.DevCertResult, tls_dir: Path) -> None:
    before = snapshot(tls_dir)
    assert tls.write_bootstrap_certificate(tls_dir, "bot.example.com", now=T0) is False
    assert snapshot(tls_dir) == before


def test_bootstrap_refuses_half_a_pair(tls_dir: Path) -> None:
    tls_dir.mkdir(parents=True)
    write_key(tls_dir / "privkey.pem")
    before = (tls_dir / "privkey.pem").read_bytes()
    with pytest.raises(OpsError, match=re.escape(str(tls_dir / "privkey.pem"))):
        tls.write_bootstrap_certificate(tls_dir, "bot.example.com", now=T0)
    assert not (tls_dir / "fullchain.pem").exists()
    assert (tls_dir / "privkey.pem").read_bytes() == before


# --- certbot -------------------------------------------------------------------------------------------------------

DIRS = {"config_dir": "/etc/letsencrypt", "work_dir": "/var/lib/letsencrypt", "logs_dir": "/var/log/letsencrypt"}


def test_certonly_args_exact() -> None:
    args = tls.certbot_certonly_args(
        "bot.example.com", email="ops@example.com", webroot="/var/www/acme", staging=False, server=None, **DIRS
    )
    assert args == [
        "certonly",
        "--webroot",
        "-w",
        "/var/www/acme",
        "-d",
        "bot.example.com",
        "--non-interactive",
        "--agree-tos",
        "--email",
        "ops@example.com",
        "--config-dir",
        "/etc/letsencrypt",
        "--work-dir",
        "/var/lib/letsencrypt",
        "--logs-dir",
        "/var/log/letsencrypt",
        "--key-type",
        "ecdsa",
        "--elliptic-curve",
        "secp256r1",
        "--cert-name",
        "bot.example.com",
    ]


@pytest.mark.parametrize("staging", [False, True])
@pytest.mark.parametrize("server", [None, "https://pebble:14000/dir"])
@pytest.mark.parametrize("email", [None, "ops@example.com"])
def test_certonly_args_never_name_the_program(staging: bool, server: str | None, email: str | None) -> None:
    args = tls.certbot_certonly_args(
        "bot.example.com", email=email, webroot="/w", staging=staging, server=server, **DIRS
    )
    assert "certbot" not in args
    assert args[0] == "certonly"


def test_certonly_server_wins_over_staging() -> None:
    args = tls.certbot_certonly_args(
        "a.example.com", email=None, webroot="/w", staging=True, server="https://pebble:14000/dir", **DIRS
    )
    assert args[args.index("--server") + 1] == "https://pebble:14000/dir"
    assert "--staging" not in args


def test_certonly_staging_without_server() -> None:
    args = tls.certbot_certonly_args("a.example.com", email=None, webroot="/w", staging=True, server=None, **DIRS)
    assert "--staging" in args
    assert "--server" not in args
    plain = tls.certbot_certonly_args("a.example.com", email=None, webroot="/w", staging=False, server=None, **DIRS)
    assert "--staging" not in plain and "--server" not in plain


def test_certonly_without_email_registers_unsafely() -> None:
    args = tls.certbot_certonly_args("a.example.com", email=None, webroot="/w", staging=False, server=None, **DIRS)
    assert "--register-unsafely-without-email" in args
    assert "--email" not in args
    with_email = tls.certbot_certonly_args(
        "a.example.com", email="me@example.com", webroot="/w", staging=False, server=None, **DIRS
    )
    assert "--register-unsafely-without-email" not in with_email


def test_certonly_bad_email_is_bad_input() -> None:
    with pytest.raises(BadInput, match="email"):
        tls.certbot_certonly_args("a.example.com", email="nobody", webroot="/w", staging=False, server=None, **DIRS)


def test_renew_args() -> None:
    plain = tls.certbot_renew_args(force=False, server=None, deploy_hook=None, **DIRS)
    assert plain == [
        "renew",
        "--non-interactive",
        "--no-random-sleep-on-renew",
        "--config-dir",
        "/etc/letsencrypt",
        "--work-dir",
        "/var/lib/letsencrypt",
        "--logs-dir",
        "/var/log/letsencrypt",
    ]
    full = tls.certbot_renew_args(force=True, server="https://pebble/dir", deploy_hook="touch /x", **DIRS)
    assert "certbot" not in full
    assert "--force-renewal" in full
    assert full[full.index("--server") + 1] == "https://pebble/dir"
    assert full[full.index("--deploy-hook") + 1] == "touch /x"


NOT_DUE = """\
Saving debug log to /var/log/letsencrypt/letsencrypt.log

- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Processing /etc/letsencrypt/renewal/example.com.conf
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Certificate not yet due for renewal

- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
The following certificates are not due for renewal yet:
  /etc/letsencrypt/live/example.com/fullchain.pem expires on 2027-01-01 (skipped)
No renewals were attempted.
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
"""

RENEWED = """\
Processing /etc/letsencrypt/renewal/example.com.conf
Renewing an existing certificate for example.com

- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Congratulations, all renewals succeeded:
  /etc/letsencrypt/live/example.com/fullchain.pem (success)
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
"""

ALL_FAILED = """\
Processing /etc/letsencrypt/renewal/example.com.conf
Failed to renew certificate example.com with error: Some challenges have failed.

- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
All renewals failed. The following certificates could not be renewed:
  /etc/letsencrypt/live/example.com/fullchain.pem (failure)
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
1 renew failure(s), 0 parse failure(s)
"""

MIXED = """\
The following certificates are not due for renewal yet:
  /etc/letsencrypt/live/c.example.com/fullchain.pem expires on 2027-01-01 (skipped)
The following renewals succeeded:
  /etc/letsencrypt/live/a.example.com/fullchain.pem (success)

The following renewals failed:
  /etc/letsencrypt/live/b.example.com/fullchain.pem (failure)

Additionally, the following renewal configurations were invalid:
  /etc/letsencrypt/renewal/d.example.com.conf (parsefail)
"""


def test_parse_renew_not_due() -> None:
    assert tls.parse_renew_output(NOT_DUE) == tls.RenewOutcome(renewed=(), not_due=("example.com",), failed=())


def test_parse_renew_success() -> None:
    outcome = tls.parse_renew_output(RENEWED)
    assert outcome == tls.RenewOutcome(renewed=("example.com",), not_due=(), failed=())
    assert outcome.ok


def test_parse_renew_failure() -> None:
    outcome = tls.parse_renew_output(ALL_FAILED)
    assert outcome == tls.RenewOutcome(renewed=(), not_due=(), failed=("example.com",))
    assert not outcome.ok


def test_parse_renew_mixed_and_crlf() -> None:
    outcome = tls.parse_renew_output(MIXED.replace("\n", "\r\n"))
    assert outcome.renewed == ("a.example.com",)
    assert outcome.not_due == ("c.example.com",)
    assert outcome.failed == ("b.example.com", "d.example.com")


def test_parse_renew_nothing_recognised() -> None:
    assert tls.parse_renew_output("Traceback (most recent call last):\n  boom\n") == tls.RenewOutcome((), (), ())


# --- install_certificate -------------------------------------------------------------------------------------------


def test_install_replaces_pair_and_backs_up(dev: tls.DevCertResult, other_pair: Path, tls_dir: Path) -> None:
    before = snapshot(tls_dir)
    tls.install_certificate(other_pair / "fullchain.pem", other_pair / "privkey.pem", tls_dir, now=T0)
    assert (tls_dir / "fullchain.pem").read_bytes() == (other_pair / "fullchain.pem").read_bytes()
    assert (tls_dir / "privkey.pem").read_bytes() == (other_pair / "privkey.pem").read_bytes()
    assert mode(tls_dir / "privkey.pem") == 0o600
    assert mode(tls_dir / "fullchain.pem") == 0o644
    saved = sorted(p.read_bytes() for p in backups(tls_dir))
    assert saved == sorted([before["fullchain.pem"], before["privkey.pem"]])
    assert tls.certificate_status(tls_dir, now=T0).subject == "CN=bot.example.com"
    assert not [p for p in tls_dir.iterdir() if p.name.endswith(".tmp")]


def test_install_into_empty_dir(other_pair: Path, tls_dir: Path) -> None:
    tls.install_certificate(other_pair / "fullchain.pem", other_pair / "privkey.pem", tls_dir, now=T0)
    assert tls.certificate_status(tls_dir, now=T0).ok
    assert mode(tls_dir) == 0o700
    assert backups(tls_dir) == []


def test_install_refuses_mismatched_key(dev: tls.DevCertResult, other_pair: Path, tls_dir: Path) -> None:
    before = snapshot(tls_dir)
    with pytest.raises(BadInput, match="does not match"):
        tls.install_certificate(other_pair / "fullchain.pem", tls_dir / "ca.key", tls_dir, now=T0)
    assert snapshot(tls_dir) == before
    assert backups(tls_dir) == []


def test_install_refuses_expired(dev: tls.DevCertResult, other_pair: Path, tls_dir: Path) -> None:
    before = snapshot(tls_dir)
    with pytest.raises(BadInput, match="not valid now"):
        tls.install_certificate(
            other_pair / "fullchain.pem", other_pair / "privkey.pem", tls_dir, now=T0 + timedelta(days=400)
        )
    assert snapshot(tls_dir) == before
    assert backups(tls_dir) == []


def test_install_refuses_missing_source(dev: tls.DevCertResult, tmp_path: Path, tls_dir: Path) -> None:
    before = snapshot(tls_dir)
    with pytest.raises(BadInput, match="no certificate at"):
        tls.install_certificate(tmp_path / "nope.pem", tmp_path / "nokey.pem", tls_dir, now=T0)
    assert snapshot(tls_dir) == before


def failing_second_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key is renamed into place, then renaming the chain fails (a full disk, a read-only remount)."""
    real = files.commit
    calls = {"n": 0}

    def commit(staged: Path, path: Path, *, sync: bool = True) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            staged.unlink()
            raise OSError(30, "Read-only file system")
        real(staged, path, sync=sync)

    monkeypatch.setattr(files, "commit", commit)


def test_install_puts_the_old_key_back_when_the_chain_cannot_be_replaced(
    dev: tls.DevCertResult, other_pair: Path, tls_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(tls_dir)
    failing_second_commit(monkeypatch)
    message = r"could not replace .*fullchain\.pem \(Read-only file system\); the previous pair was kept"
    with pytest.raises(OpsError, match=message):
        tls.install_certificate(other_pair / "fullchain.pem", other_pair / "privkey.pem", tls_dir, now=T0)
    assert snapshot(tls_dir) == before
    assert mode(tls_dir / "privkey.pem") == 0o600
    assert not [p for p in tls_dir.iterdir() if p.name.endswith(".tmp")]


def test_install_into_empty_dir_removes_the_new_key_when_the_chain_cannot_be_placed(
    other_pair: Path, tls_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_second_commit(monkeypatch)
    with pytest.raises(OpsError, match="the previous pair was kept"):
        tls.install_certificate(other_pair / "fullchain.pem", other_pair / "privkey.pem", tls_dir, now=T0)
    assert sorted(p.name for p in tls_dir.iterdir()) == []
