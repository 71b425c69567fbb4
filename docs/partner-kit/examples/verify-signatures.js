// Checks the payment callback's two signatures against docs/partner-kit/signing-vectors.csv.
// Node.js 18 or newer, standard library only:  node verify-signatures.js signing-vectors.csv
//
// sign()            the documented MD5 `sign` (uppercase hex).
// signatureHeader() the X-QW-Signature value the platform sends: t=<ms>,v1=<hex HMAC-SHA256>.
// verifyHeader()    what a receiver does with that header: true if one v1= matches one of the
//                   secrets. Also check that t is recent (the kit allows 600 s either way).
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");

function sign(f, secret) {
  // No separators; strings are hashed as UTF-8 (Node's default for a string).
  const text = f.cpOrderId + f.serverId + f.uid + f.productPrice + f.productId + f.ts + secret;
  return crypto.createHash("md5").update(text, "utf8").digest("hex").toUpperCase();
}

function hmacHex(secret, t, body) {
  // body: the exact bytes received (a Buffer); never a re-serialised object.
  return crypto.createHmac("sha256", Buffer.from(secret, "utf8"))
    .update(Buffer.concat([Buffer.from(`${t}.`, "utf8"), body]))
    .digest("hex");
}

function signatureHeader(body, secret, t) {
  return `t=${t},v1=${hmacHex(secret, t, body)}`;
}

function verifyHeader(header, body, secrets) {
  let t = null;
  const given = [];
  for (const item of header.split(",")) {
    const [key, value] = item.trim().split(/=(.*)/s);
    if (key === "t" && t === null) t = value;
    else if (key === "v1" && /^[0-9a-f]{64}$/.test(value)) given.push(Buffer.from(value, "hex"));
  }
  if (t === null || !/^[0-9]{1,16}$/.test(t) || given.length === 0) return false;
  let ok = false;
  for (const secret of secrets) {
    const expected = Buffer.from(hmacHex(secret, t, body), "hex");
    for (const candidate of given) ok = crypto.timingSafeEqual(candidate, expected) || ok;
  }
  return ok;
}

// RFC 4180: quoted fields, doubled quotes, commas inside quotes.
function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n") { row.push(field); rows.push(row); row = []; field = ""; }
    else if (c !== "\r") field += c;
  }
  if (field !== "" || row.length) { row.push(field); rows.push(row); }
  const [header, ...body] = rows;
  return body.map((cells) => Object.fromEntries(header.map((name, i) => [name, cells[i]])));
}

function main(path) {
  const vectors = parseCsv(fs.readFileSync(path, "utf8"));
  const failures = [];
  const signs = {};
  for (const v of vectors) {
    if (v.kind === "sign") {
      const got = sign(v, v.secret);
      signs[v.case] = got;
      if (got !== v.expected) failures.push(`${v.case}: sign ${got}, expected ${v.expected}`);
    } else if (v.kind === "x-qw-signature") {
      const body = Buffer.from(v.body, "utf8");
      const got = signatureHeader(body, v.secret, v.t);
      if (got !== v.expected) failures.push(`${v.case}: header ${got}, expected ${v.expected}`);
      if (!verifyHeader(v.expected, body, ["old-secret", v.secret])) {
        failures.push(`${v.case}: the expected header does not verify`);
      }
      if (verifyHeader(v.expected, Buffer.concat([body, Buffer.from(" ")]), [v.secret])) {
        failures.push(`${v.case}: a changed body verifies`);
      }
    } else {
      failures.push(`${v.case}: unknown kind ${v.kind}`);
    }
  }
  // The field-boundary shift: another order, the same MD5 (why the header exists).
  if (signs["field-shift-a"] === undefined || signs["field-shift-a"] !== signs["field-shift-b"]) {
    failures.push("field-shift-a and field-shift-b should share their sign");
  }
  for (const failure of failures) console.log(`FAIL ${failure}`);
  console.log(`javascript: ${vectors.length} vectors, ${failures.length} failures`);
  process.exitCode = failures.length === 0 && vectors.length > 0 ? 0 : 1;
}

main(process.argv[2] || `${__dirname}/../signing-vectors.csv`);
