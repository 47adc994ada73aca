"""Fetch Amazon RDS's certificate bundle and record its SHA-256 (``make rds-ca-bundle``).

The deployed functions verify both databases against this bundle (``sslmode=verify-full``):
the root authorities of every AWS Region, which RDS and Aurora server certificates chain to.
AWS adds a Region's authorities when the Region opens; refresh then, and review the diff
(certificates added, none silently replaced) before committing it.

The script refuses a download that is not a PEM bundle of self-signed Amazon RDS root
authorities, so a captive portal or a truncated transfer never reaches the layer.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from pathlib import Path

from cryptography import x509

SOURCE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
BUNDLE = Path(__file__).resolve().parents[1] / "layers" / "core" / "totes" / "rds-global-bundle.pem"
CHECKSUM = BUNDLE.with_name(BUNDLE.name + ".sha256")


def _checked(pem: bytes) -> list[x509.Certificate]:
    certificates = x509.load_pem_x509_certificates(pem)
    for certificate in certificates:
        organisation = certificate.subject.get_attributes_for_oid(
            x509.oid.NameOID.ORGANIZATIONAL_UNIT_NAME
        )
        if [attribute.value for attribute in organisation] != ["Amazon RDS"]:
            raise SystemExit(f"not an Amazon RDS authority: {certificate.subject.rfc4514_string()}")
        if certificate.issuer != certificate.subject:
            raise SystemExit(f"not a root authority: {certificate.subject.rfc4514_string()}")
    return certificates


def main() -> int:
    # A fixed https URL, not one a user gives.
    with urllib.request.urlopen(SOURCE_URL, timeout=30) as response:  # nosec B310
        pem = response.read()
    certificates = _checked(pem)
    BUNDLE.write_bytes(pem)
    CHECKSUM.write_text(f"{hashlib.sha256(pem).hexdigest()}  {BUNDLE.name}\n", encoding="ascii")
    print(f"{BUNDLE.name}: {len(certificates)} authorities from {SOURCE_URL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
