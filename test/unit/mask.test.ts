import { describe, expect, it } from "vitest";
import { MASK, maskSecrets, secretNeedles } from "../../src/lib/mask.ts";

describe("secretNeedles + maskSecrets", () => {
  it("masks a URL whole, and its password alone or percent-decoded", () => {
    const needles = secretNeedles(["postgres://app:p%40ss-w0rd@db:6432/app"]);
    const text = "url=postgres://app:p%40ss-w0rd@db:6432/app pw=p%40ss-w0rd decoded=p@ss-w0rd";
    expect(maskSecrets(text, needles)).toBe(`url=${MASK} pw=${MASK} decoded=${MASK}`);
  });

  it("leaves values shorter than a secret readable and masks every occurrence of the others", () => {
    const needles = secretNeedles(["1", "prod", "s3cr3t-token"]);
    expect(needles).toEqual(["s3cr3t-token"]);
    expect(maskSecrets("DEBUG=1 ENV=prod a=s3cr3t-token b=s3cr3t-token", needles)).toBe(
      `DEBUG=1 ENV=prod a=${MASK} b=${MASK}`,
    );
  });

  it("is text in, text out: regex characters in a secret are literal", () => {
    expect(maskSecrets("x=a.b*c+d? y=aXbbc", secretNeedles(["a.b*c+d?"]))).toBe(`x=${MASK} y=aXbbc`);
  });
});
