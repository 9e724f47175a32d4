"""Mints a JWT with PyJWT. Reads {alg, key, kid, claims} as JSON on stdin, prints the token."""
import json
import sys

import jwt

spec = json.load(sys.stdin)
headers = {"kid": spec["kid"]} if spec.get("kid") else None
print(jwt.encode(spec["claims"], spec["key"], algorithm=spec["alg"], headers=headers))
