// Verifies a JWT with `jose` against a live JWKS URL, as a Node resource server would.
// Reads {jwks_url, token, issuer, audience} as JSON on stdin; prints the verified claims.
import { createRemoteJWKSet, jwtVerify } from "jose";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const spec = JSON.parse(input);
const jwks = createRemoteJWKSet(new URL(spec.jwks_url));
const { payload } = await jwtVerify(spec.token, jwks, { issuer: spec.issuer, audience: spec.audience });
process.stdout.write(JSON.stringify(payload) + "\n");
