"""Verifies a JWT with PyJWT against a live JWKS URL, as a Python resource server would.
Reads {jwks_url, token, issuer, audience} as JSON on stdin; prints the verified claims."""
import json
import sys

import jwt

spec = json.load(sys.stdin)
key = jwt.PyJWKClient(spec["jwks_url"]).get_signing_key_from_jwt(spec["token"])
claims = jwt.decode(
    spec["token"], key.key, algorithms=["ES256", "RS256", "EdDSA"], audience=spec["audience"], issuer=spec["issuer"]
)
print(json.dumps(claims))
