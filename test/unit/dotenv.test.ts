import { describe, expect, it } from "vitest";
import { DotenvError, parseDotenv } from "../../src/lib/dotenv.ts";

function errorOf(text: string): DotenvError {
  try {
    parseDotenv(text);
  } catch (err) {
    if (err instanceof DotenvError) return err;
    throw err;
  }
  throw new Error("parsed without an error");
}

describe("parseDotenv", () => {
  it("reads plain, quoted and exported assignments, skipping comments and blank lines", () => {
    const text = [
      "\uFEFF# a comment",
      "",
      "PLAIN=value",
      "SPACED=  two words   # trailing comment",
      'DOUBLE="a \\"quoted\\" \\\\ value # not a comment"',
      "SINGLE='lit\\eral $HOME'",
      "export EXPORTED=yes",
      "EMPTY=",
      'EMPTY_QUOTED=""',
      "HASH=a#b",
      "WINDOWS=crlf\r",
      "   # indented comment",
    ].join("\n");
    expect(parseDotenv(text)).toEqual([
      { key: "PLAIN", value: "value", line: 3 },
      { key: "SPACED", value: "two words", line: 4 },
      { key: "DOUBLE", value: 'a "quoted" \\ value # not a comment', line: 5 },
      { key: "SINGLE", value: "lit\\eral $HOME", line: 6 },
      { key: "EXPORTED", value: "yes", line: 7 },
      { key: "EMPTY", value: "", line: 8 },
      { key: "EMPTY_QUOTED", value: "", line: 9 },
      { key: "HASH", value: "a#b", line: 10 },
      { key: "WINDOWS", value: "crlf", line: 11 },
    ]);
  });

  it.each([
    ["no equals sign", "OK=1\nJUSTAKEY", 2],
    ["blank before =", "KEY =value", 1],
    ["blank after = then quote is fine, but a key with a dash is not", "MY-KEY=1", 1],
    ["unterminated double quote", 'A=1\nB="open', 2],
    ["unterminated single quote", "B='open", 1],
    ["text after the closing quote", 'B="x"y', 1],
    ["unknown escape", 'B="a\\nb"', 1],
    ["a key twice", "A=1\n\nA=2", 3],
    ["a line starting with =", "=value", 1],
  ])("refuses %s with its line number", (_name, text, line) => {
    expect(errorOf(text).line).toBe(line);
    expect(errorOf(text).message).toMatch(new RegExp(`^line ${line}: `));
  });

  it("never puts a value into an error message", () => {
    const secret = "s3cr3t-Value-123";
    for (const text of [
      `A="${secret}`,
      `A='${secret}`,
      `A="${secret}" trailing`,
      `A="${secret}\\q"`,
      `A=${secret}\nA=${secret}`,
      `A ${secret}`,
    ]) {
      expect(errorOf(text).message).not.toContain(secret);
    }
  });
});
