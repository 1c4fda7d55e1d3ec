"""Unit tests for analyticbot_ops.tls.backup: the backup path's private CA and the certificates of its two pgBackRest
TLS peers (backup-agent, backup-repo), each a server and the other's client."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from analyticbot_ops import tls
from analyticbot_ops.tls import backup as backup_tls

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PEERS = ("backup-agent", "backup-repo")
FILES = tuple(f"{name}.{ext}" for name in ("ca", *PEERS) for ext in ("crt", "key"))


# --- helpers -------------------------------------------------------------------------------------------------------


def cert(directory: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((directory / f"{name}.crt").read_bytes())


def key(directory: Path, name: str) -> ec.EllipticCurvePrivateKey:
    loaded = serialization.load_pem_private_key((directory / f"{name}.key").read_bytes(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in FILES}


def common_name(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / backup_tls.FOLDER


@pytest.fixture
def issued(directory: Path) -> backup_tls.BackupCertResult:
    return backup_tls.ensure_backup_certificates(directory, now=T0)


# --- a fresh folder --------------------------------------------------------------------------------------------------


def test_an_empty_folder_gets_the_ca_and_both_peers(directory: Path) -> None:
    result = backup_tls.ensure_backup_certificates(directory, now=T0)
    assert result == backup_tls.BackupCertResult(directory, ("ca", *PEERS))
    assert backup_tls.PEERS == PEERS
    # Each file where the compose backup overlay mounts it from, and no temporary file left by the atomic writes.
    assert sorted(p.name for p in directory.iterdir()) == sorted(FILES)
    paths = backup_tls.files_of(directory)
    assert paths["backup-repo"] == (directory / "backup-repo.crt", directory / "backup-repo.key")


def test_keys_are_0600_certificates_0644_the_folder_0700(issued: backup_tls.BackupCertResult, directory: Path) -> None:
    assert mode(directory) == 0o700
    for name in ("ca", *PEERS):
        assert mode(directory / f"{name}.key") == 0o600, name
        assert mode(directory / f"{name}.crt") == 0o644, name


def test_the_ca_is_a_self_signed_pathlen0_ca_for_ten_years(
    issued: backup_tls.BackupCertResult, directory: Path
) -> None:
    ca = cert(directory, "ca")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert common_name(ca) == backup_tls.CA_COMMON_NAME and ca.subject == ca.issuer
    assert tls.lifetime(ca) == timedelta(days=backup_tls.CA_DAYS)
    assert tls.key_matches(ca, key(directory, "ca"))
    assert isinstance(key(directory, "ca").curve, ec.SECP256R1)


@pytest.mark.parametrize("peer", PEERS)
def test_each_peer_is_a_server_and_a_client_named_as_the_other_side_dials_it(
    issued: backup_tls.BackupCertResult, directory: Path, peer: str
) -> None:
    leaf, ca = cert(directory, peer), cert(directory, "ca")
    leaf.verify_directly_issued_by(ca)  # raises unless the CA signed it
    assert tls.key_matches(leaf, key(directory, peer))
    assert isinstance(key(directory, peer).curve, ec.SECP256R1)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    # The SAN is the service (and host) name; the common name is what the other side's tls-server-auth admits.
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(sans) == [x509.DNSName(peer)]
    assert common_name(leaf) == peer
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert leaf.not_valid_before_utc <= T0 < leaf.not_valid_after_utc
    assert tls.lifetime(leaf) == timedelta(days=backup_tls.LEAF_DAYS)


def test_the_two_peers_have_keys_of_their_own(issued: backup_tls.BackupCertResult, directory: Path) -> None:
    assert cert(directory, "backup-agent").public_key() != cert(directory, "backup-repo").public_key()
    assert not tls.key_matches(cert(directory, "backup-agent"), key(directory, "backup-repo"))


# --- a second call ---------------------------------------------------------------------------------------------------


def test_valid_certificates_are_kept_byte_for_byte(issued: backup_tls.BackupCertResult, directory: Path) -> None:
    before = snapshot(directory)
    later = T0 + timedelta(days=300)  # 65 days left: more than RENEW_WITHIN_DAYS
    assert backup_tls.ensure_backup_certificates(directory, now=later).issued == ()
    assert snapshot(directory) == before
    assert not (directory / ".backup").exists()


def test_an_expiring_peer_is_reissued_and_the_rest_kept(issued: backup_tls.BackupCertResult, directory: Path) -> None:
    # backup-agent's pair is lost and made again later: only backup-repo's expires in the end.
    for suffix in ("crt", "key"):
        (directory / f"backup-agent.{suffix}").unlink()
    assert backup_tls.ensure_backup_certificates(directory, now=T0 + timedelta(days=200)).issued == ("backup-agent",)
    before = snapshot(directory)
    expiring = cert(directory, "backup-repo")
    moment = expiring.not_valid_after_utc - timedelta(days=backup_tls.RENEW_WITHIN_DAYS)
    assert backup_tls.ensure_backup_certificates(directory, now=moment).issued == ("backup-repo",)
    after = snapshot(directory)
    assert {name for name in FILES if after[name] != before[name]} == {"backup-repo.crt", "backup-repo.key"}
    renewed = cert(directory, "backup-repo")
    assert tls.days_left(renewed, moment) >= backup_tls.LEAF_DAYS - 1
    renewed.verify_directly_issued_by(cert(directory, "ca"))
    assert mode(directory / "backup-repo.key") == 0o600
    # The replaced pair is backed up, as any replaced certificate.
    assert before["backup-repo.crt"] in [p.read_bytes() for p in (directory / ".backup").iterdir()]


def test_a_peer_with_a_day_more_than_the_renewal_window_is_kept(
    issued: backup_tls.BackupCertResult, directory: Path
) -> None:
    leaf = cert(directory, "backup-agent")
    moment = leaf.not_valid_after_utc - timedelta(days=backup_tls.RENEW_WITHIN_DAYS + 1, hours=1)
    assert backup_tls.ensure_backup_certificates(directory, now=moment).issued == ()


def test_a_peer_whose_key_does_not_match_is_reissued(issued: backup_tls.BackupCertResult, directory: Path) -> None:
    (directory / "backup-agent.key").write_bytes((directory / "backup-repo.key").read_bytes())
    assert backup_tls.ensure_backup_certificates(directory, now=T0).issued == ("backup-agent",)
    assert tls.key_matches(cert(directory, "backup-agent"), key(directory, "backup-agent"))


def test_a_peer_another_ca_signed_is_reissued(issued: backup_tls.BackupCertResult, tmp_path: Path) -> None:
    other = tmp_path / "other"
    backup_tls.ensure_backup_certificates(other, now=T0)
    directory = issued.directory
    for suffix in ("crt", "key"):
        (directory / f"backup-repo.{suffix}").write_bytes((other / f"backup-repo.{suffix}").read_bytes())
    assert backup_tls.ensure_backup_certificates(directory, now=T0).issued == ("backup-repo",)
    cert(directory, "backup-repo").verify_directly_issued_by(cert(directory, "ca"))


def test_a_new_ca_reissues_both_peers(issued: backup_tls.BackupCertResult, directory: Path) -> None:
    before = snapshot(directory)
    (directory / "ca.key").unlink()  # a CA that can sign nothing more
    assert backup_tls.ensure_backup_certificates(directory, now=T0).issued == ("ca", *PEERS)
    after = snapshot(directory)
    assert all(after[name] != before[name] for name in FILES)
    for peer in PEERS:
        cert(directory, peer).verify_directly_issued_by(cert(directory, "ca"))


def test_a_ca_within_a_leafs_lifetime_of_its_end_is_reissued(
    issued: backup_tls.BackupCertResult, directory: Path
) -> None:
    # A peer issued now must not outlive its CA.
    moment = cert(directory, "ca").not_valid_after_utc - timedelta(days=backup_tls.LEAF_DAYS)
    assert backup_tls.ensure_backup_certificates(directory, now=moment).issued == ("ca", *PEERS)


def test_modes_are_restored_on_kept_files(issued: backup_tls.BackupCertResult, directory: Path) -> None:
    os.chmod(directory / "backup-agent.key", 0o644)
    os.chmod(directory / "ca.key", 0o640)
    os.chmod(directory, 0o755)
    assert backup_tls.ensure_backup_certificates(directory, now=T0).issued == ()
    assert mode(directory / "backup-agent.key") == mode(directory / "ca.key") == 0o600
    assert mode(directory) == 0o700


# --- owners ----------------------------------------------------------------------------------------------------------


def test_as_root_the_peers_files_go_to_the_container_user_and_the_ca_key_stays(
    monkeypatch: pytest.MonkeyPatch, directory: Path
) -> None:
    calls: list[tuple[str, int, int]] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "chown", lambda path, uid, gid: calls.append((Path(path).name, uid, gid)))
    monkeypatch.setattr(os, "fchown", lambda fd, uid, gid: calls.append(("fd", uid, gid)))
    backup_tls.ensure_backup_certificates(directory, now=T0)
    chowned = {name for name, _, _ in calls}
    assert {"ca.crt", "backup-agent.crt", "backup-agent.key", "backup-repo.crt", "backup-repo.key"} <= chowned
    assert all((uid, gid) == (backup_tls.OWNER_UID, backup_tls.OWNER_UID) for _, uid, gid in calls)
    # No container needs the CA key (nor the folder: the overlay mounts the files).
    assert "ca.key" not in chowned and backup_tls.FOLDER not in chowned


def test_as_another_user_nothing_is_chowned(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "chown", lambda *args: calls.append(args))
    monkeypatch.setattr(os, "fchown", lambda *args: calls.append(args))
    assert backup_tls.ensure_backup_certificates(directory, now=T0).issued == ("ca", *PEERS)
    assert calls == []
