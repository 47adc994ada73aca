"""The Amazon RDS certificate bundle the deployed functions verify both databases against:
what ships is what was fetched, and it holds only Amazon RDS root authorities that last."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID

from totes.credentials import RDS_CA_BUNDLE


def test_the_bundle_is_the_one_whose_sha256_is_recorded() -> None:
    # Given the bundle and the checksum `make rds-ca-bundle` wrote next to it
    recorded, name = RDS_CA_BUNDLE.with_name(RDS_CA_BUNDLE.name + ".sha256").read_text().split()

    # Then they agree: nobody edited the bundle by hand
    assert name == RDS_CA_BUNDLE.name
    assert hashlib.sha256(RDS_CA_BUNDLE.read_bytes()).hexdigest() == recorded


def test_every_certificate_is_an_amazon_rds_root_valid_for_years_to_come() -> None:
    # Given the certificates of the bundle
    certificates = x509.load_pem_x509_certificates(RDS_CA_BUNDLE.read_bytes())
    soon = datetime.now(UTC) + timedelta(days=365)

    # Then each is a self-issued authority of Amazon RDS that outlives the coming year
    for certificate in certificates:
        subject = certificate.subject
        assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
            "Amazon RDS"
        )
        assert certificate.issuer == subject
        assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert certificate.not_valid_after_utc > soon, subject.rfc4514_string()
    # And the Regions the client may deploy to have their authorities (RSA and ECC)
    names = {c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in certificates}
    for region in ("eu-west-2", "eu-west-1", "us-east-1"):
        assert f"Amazon RDS {region} Root CA RSA2048 G1" in names
        assert f"Amazon RDS {region} Root CA ECC384 G1" in names
