import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

/**
 * Secrets at rest (tenant env values, generated DB passwords): AES-256-GCM with a key derived by HKDF from
 * TUSSILAGO_SECRET_KEY. Format: `v1.<iv b64url>.<tag b64url>.<ciphertext b64url>`; the version prefix lets the
 * scheme change later without guessing.
 */
export class SecretBox {
  readonly #key: Buffer;

  constructor(secretKey: string, purpose = "tussilago/secrets-at-rest/v1") {
    if (secretKey.length < 32) throw new Error("secret key must be at least 32 characters");
    this.#key = Buffer.from(hkdfSync("sha256", secretKey, Buffer.alloc(0), purpose, 32));
  }

  seal(plaintext: string, associatedData = ""): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    cipher.setAAD(Buffer.from(associatedData));
    const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return [
      "v1",
      iv.toString("base64url"),
      cipher.getAuthTag().toString("base64url"),
      ciphertext.toString("base64url"),
    ].join(".");
  }

  /** Throws when the value was tampered with, sealed with another key, or bound to other associated data. */
  open(sealed: string, associatedData = ""): string {
    const [version, iv, tag, ciphertext] = sealed.split(".");
    if (version !== "v1" || iv === undefined || tag === undefined || ciphertext === undefined) {
      throw new Error("unrecognised sealed value");
    }
    const decipher = createDecipheriv("aes-256-gcm", this.#key, Buffer.from(iv, "base64url"));
    decipher.setAAD(Buffer.from(associatedData));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]).toString("utf8");
  }
}
