// Verifies a JWT with `jose` against a live JWKS URL, as a Node resource server would.
// Reads {jwks_url, token, issuer, audience, typ?} as JSON on stdin; prints the verified claims.
import { createRemoteJWKSet, jwtVerify } from "jose";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const spec = JSON.parse(input);
const jwks = createRemoteJWKSet(new URL(spec.jwks_url));
// `typ` (when given) is checked too, as RFC 9068 resource servers do for access tokens.
const options = { issuer: spec.issuer, audience: spec.audience, ...(spec.typ ? { typ: spec.typ } : {}) };
const { payload } = await jwtVerify(spec.token, jwks, options);
process.stdout.write(JSON.stringify(payload) + "\n");
