"""Self-signed TLS certificates for servers the tests run on 127.0.0.1.

Peers in the tests never verify certificates (Synapse: federation_verify_certificates:
false; ours: federation.verify_certificates: false), but TLS itself is real, as a
server reachable at an IP literal with a port is reached only over HTTPS.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CertificatePair:
    certificate: Path
    private_key: Path


def make_self_signed_certificate(directory: Path, name: str = "tls") -> CertificatePair:
    """A certificate for 127.0.0.1 and localhost and its unencrypted key, as PEM files.

    Written once: a directory that already holds the pair keeps it, so a server
    restarted on the same data presents the same certificate.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pair = CertificatePair(directory / f"{name}.crt", directory / f"{name}.key")
    if pair.certificate.exists() and pair.private_key.exists():
        return pair
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed to make test certificates (apt-get install openssl)")
    result = subprocess.run(
        [
            openssl, "req", "-x509", "-nodes", "-days", "30",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(pair.private_key), "-out", str(pair.certificate),
        ],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl could not make a certificate: {result.stderr.strip()}")
    return pair
