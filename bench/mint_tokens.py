#!/usr/bin/env python3
"""Mints the keys and tokens for bench/run.sh.

    python3 bench/mint_tokens.py OUTDIR [POOL]

Writes into OUTDIR, for each algorithm A in {rs (RS256, RSA-2048), es (ES256, P-256)}:
  A.pub.pem        SubjectPublicKeyInfo PEM (for HAProxy's jwt_verify)
  A.jwks.json      {"keys": [...]} with kid/alg/use (for Gatehouse's jwks_file)
  A.tokens         POOL distinct valid tokens, one a line (different sub and jti)
  A.expired        one token that expired an hour ago
  A.badsig         one valid token with its signature altered
  A.wrongaud       one token for an audience nobody accepts (Gatehouse must refuse it;
                   the HAProxy configuration does not check aud, as the issue specifies)
Every token carries iss, aud, sub, iat, exp (+1 day), jti and a kid header.
"""

import base64
import json
import os
import sys
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

AUDIENCE = "bench"


def b64u_int(n: int, length: int | None = None) -> str:
    length = length or (n.bit_length() + 7) // 8
    return base64.urlsafe_b64encode(n.to_bytes(length, "big")).rstrip(b"=").decode()


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def main() -> None:
    out = sys.argv[1]
    pool = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    os.makedirs(out, exist_ok=True)
    now = int(time.time())

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())

    rn = rsa_key.public_key().public_numbers()
    en = ec_key.public_key().public_numbers()
    setups = {
        "rs": (
            "RS256",
            rsa_key,
            "bench-rs-1",
            {"kty": "RSA", "n": b64u_int(rn.n), "e": b64u_int(rn.e)},
        ),
        "es": (
            "ES256",
            ec_key,
            "bench-es-1",
            {"kty": "EC", "crv": "P-256", "x": b64u_int(en.x, 32), "y": b64u_int(en.y, 32)},
        ),
    }

    for prefix, (alg, key, kid, jwk) in setups.items():
        issuer = f"https://bench-{prefix}"
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        write(os.path.join(out, f"{prefix}.pub.pem"), pem.decode())
        jwk = dict(jwk, kid=kid, alg=alg, use="sig")
        write(os.path.join(out, f"{prefix}.jwks.json"), json.dumps({"keys": [jwk]}))

        def mint(i: int, **over) -> str:
            claims = {
                "iss": issuer,
                "aud": AUDIENCE,
                "sub": f"user-{i:05d}",
                "iat": now,
                "exp": now + 86400,
                "jti": str(uuid.uuid4()),
            }
            claims.update(over)
            return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})

        tokens = [mint(i) for i in range(pool)]
        assert len(set(tokens)) == pool
        write(os.path.join(out, f"{prefix}.tokens"), "\n".join(tokens) + "\n")
        write(os.path.join(out, f"{prefix}.expired"), mint(0, iat=now - 7200, exp=now - 3600))
        good = mint(0)
        head, body, sig = good.split(".")
        # Flip bits in the middle of the signature (not the last char, whose low bits may
        # be padding that some decoders ignore).
        mid = len(sig) // 2
        sig = sig[:mid] + ("A" if sig[mid] != "A" else "B") + sig[mid + 1 :]
        write(os.path.join(out, f"{prefix}.badsig"), f"{head}.{body}.{sig}")
        write(os.path.join(out, f"{prefix}.wrongaud"), mint(0, aud="someone-else"))


if __name__ == "__main__":
    main()
