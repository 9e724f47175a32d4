// Mints a JWT with the `jose` library. Reads {alg, key, kid, claims} as JSON on stdin.
import { SignJWT, importPKCS8 } from "jose";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const spec = JSON.parse(input);
const key = spec.alg.startsWith("HS")
  ? new TextEncoder().encode(spec.key)
  : await importPKCS8(spec.key, spec.alg);
const header = { alg: spec.alg, typ: "JWT" };
if (spec.kid) header.kid = spec.kid;
const token = await new SignJWT(spec.claims).setProtectedHeader(header).sign(key);
process.stdout.write(token + "\n");
