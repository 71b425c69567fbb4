// Checks the payment callback's two signatures against docs/partner-kit/signing-vectors.csv.
// Java 17, standard library only:
//   javac -d out VerifySignatures.java && java -cp out VerifySignatures signing-vectors.csv
//
// sign()            the documented MD5 `sign` (uppercase hex).
// signatureHeader() the X-QW-Signature value the platform sends: t=<ms>,v1=<hex HMAC-SHA256>.
// verifyHeader()    what a receiver does with that header: true if one v1= matches one of the
//                   secrets. Also check that t is recent (the kit allows 600 s either way).

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public final class VerifySignatures {

    static String sign(Map<String, String> f, String secret) throws GeneralSecurityException {
        // No separators; hashed as UTF-8 (name the charset: the JVM default may be another).
        String text = f.get("cpOrderId") + f.get("serverId") + f.get("uid") + f.get("productPrice")
                + f.get("productId") + f.get("ts") + secret;
        byte[] digest = MessageDigest.getInstance("MD5").digest(text.getBytes(StandardCharsets.UTF_8));
        return HexFormat.of().formatHex(digest).toUpperCase(Locale.ROOT);
    }

    static byte[] hmac(String secret, String t, byte[] body) throws GeneralSecurityException {
        // body: the exact bytes received, never a re-serialised object.
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
        mac.update((t + ".").getBytes(StandardCharsets.UTF_8));
        return mac.doFinal(body);
    }

    static String signatureHeader(byte[] body, String secret, String t)
            throws GeneralSecurityException {
        return "t=" + t + ",v1=" + HexFormat.of().formatHex(hmac(secret, t, body));
    }

    static boolean verifyHeader(String header, byte[] body, List<String> secrets)
            throws GeneralSecurityException {
        String t = null;
        List<byte[]> given = new ArrayList<>();
        for (String item : header.split(",")) {
            String[] kv = item.trim().split("=", 2);
            if (kv.length != 2) continue;
            if (kv[0].equals("t") && t == null) t = kv[1];
            else if (kv[0].equals("v1") && kv[1].matches("[0-9a-f]{64}")) given.add(HexFormat.of().parseHex(kv[1]));
        }
        if (t == null || !t.matches("[0-9]{1,16}") || given.isEmpty()) return false;
        boolean ok = false;
        for (String secret : secrets) {
            byte[] expected = hmac(secret, t, body);
            for (byte[] candidate : given) ok |= MessageDigest.isEqual(candidate, expected); // constant time
        }
        return ok;
    }

    // RFC 4180: quoted fields, doubled quotes, commas inside quotes.
    static List<Map<String, String>> parseCsv(String text) {
        List<List<String>> rows = new ArrayList<>();
        List<String> row = new ArrayList<>();
        StringBuilder field = new StringBuilder();
        boolean quoted = false;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (quoted) {
                if (c == '"' && i + 1 < text.length() && text.charAt(i + 1) == '"') { field.append('"'); i++; }
                else if (c == '"') quoted = false;
                else field.append(c);
            } else if (c == '"') quoted = true;
            else if (c == ',') { row.add(field.toString()); field.setLength(0); }
            else if (c == '\n') { row.add(field.toString()); rows.add(row); row = new ArrayList<>(); field.setLength(0); }
            else if (c != '\r') field.append(c);
        }
        if (field.length() > 0 || !row.isEmpty()) { row.add(field.toString()); rows.add(row); }
        List<String> header = rows.get(0);
        List<Map<String, String>> out = new ArrayList<>();
        for (List<String> cells : rows.subList(1, rows.size())) {
            Map<String, String> vector = new HashMap<>();
            for (int i = 0; i < header.size(); i++) vector.put(header.get(i), cells.get(i));
            out.add(vector);
        }
        return out;
    }

    public static void main(String[] args) throws IOException, GeneralSecurityException {
        String path = args.length > 0 ? args[0] : "../signing-vectors.csv";
        List<Map<String, String>> vectors = parseCsv(Files.readString(Path.of(path), StandardCharsets.UTF_8));
        List<String> failures = new ArrayList<>();
        Map<String, String> signs = new HashMap<>();
        for (Map<String, String> v : vectors) {
            String name = v.get("case");
            String expected = v.get("expected");
            if (v.get("kind").equals("sign")) {
                String got = sign(v, v.get("secret"));
                signs.put(name, got);
                if (!got.equals(expected)) failures.add(name + ": sign " + got + ", expected " + expected);
            } else if (v.get("kind").equals("x-qw-signature")) {
                byte[] body = v.get("body").getBytes(StandardCharsets.UTF_8);
                String got = signatureHeader(body, v.get("secret"), v.get("t"));
                if (!got.equals(expected)) failures.add(name + ": header " + got + ", expected " + expected);
                if (!verifyHeader(expected, body, List.of("old-secret", v.get("secret")))) {
                    failures.add(name + ": the expected header does not verify");
                }
                byte[] changed = (v.get("body") + " ").getBytes(StandardCharsets.UTF_8);
                if (verifyHeader(expected, changed, List.of(v.get("secret")))) {
                    failures.add(name + ": a changed body verifies");
                }
            } else {
                failures.add(name + ": unknown kind " + v.get("kind"));
            }
        }
        // The field-boundary shift: another order, the same MD5 (why the header exists).
        String a = signs.get("field-shift-a");
        if (a == null || !a.equals(signs.get("field-shift-b"))) {
            failures.add("field-shift-a and field-shift-b should share their sign");
        }
        for (String failure : failures) System.out.println("FAIL " + failure);
        System.out.println("java: " + vectors.size() + " vectors, " + failures.size() + " failures");
        System.exit(failures.isEmpty() && !vectors.isEmpty() ? 0 : 1);
    }
}
