import { describe, expect, it } from "vitest";
import { checkLinkedUrl, lfsEndpoint, resolveLinkedUrl, submodulesOf } from "../../src/infra/git-links.ts";
import { parseGitUrl } from "../../src/infra/git-url.ts";

const APP = "https://git.example.com/acme/shop.git";
const app = parseGitUrl(APP, false);

describe("submodule and LFS URLs stay on the app's host and transport", () => {
  it("resolves relative URLs against the app's URL, like git against remote.origin.url", () => {
    expect(resolveLinkedUrl("../lib.git", APP)).toBe("https://git.example.com/acme/lib.git");
    expect(resolveLinkedUrl("./sub.git", APP)).toBe("https://git.example.com/acme/shop.git/sub.git");
    expect(resolveLinkedUrl("../../../../x.git", APP)).toBe("https://git.example.com/x.git");
    expect(resolveLinkedUrl("https://elsewhere.example/x.git", APP)).toBe("https://elsewhere.example/x.git");
    expect(() => resolveLinkedUrl("../lib.git", "git@git.example.com:acme/shop.git")).toThrow(/relative/);
  });

  it("accepts the same host and transport, refuses any other host, port or transport", () => {
    expect(checkLinkedUrl("submodule lib", "https://git.example.com/other/lib.git", app, false).host).toBe(
      "git.example.com",
    );
    for (const url of [
      "https://evil.example.com/acme/lib.git",
      "https://git.example.com:8443/acme/lib.git",
      "ssh://git.example.com/acme/lib.git",
      "git@git.example.com:acme/lib.git",
      "file:///etc",
      "ext::sh -c id",
      "http://git.example.com/acme/lib.git",
      "-uhttps://git.example.com/x",
    ]) {
      expect(() => checkLinkedUrl("submodule lib", url, app, true), url).toThrow(
        expect.objectContaining({ kind: "refused", retryable: false }),
      );
    }
  });

  it("refuses submodule names and paths outside a narrow charset", () => {
    const entry = (name: string, path = "vendor/x") =>
      [
        [`submodule.${name}.path`, path],
        [`submodule.${name}.url`, "../x.git"],
      ] as Array<[string, string]>;
    expect(submodulesOf(entry("lib"))).toEqual([{ name: "lib", path: "vendor/x", url: "../x.git" }]);
    expect(() => submodulesOf(entry("a b"))).toThrow(/name/);
    expect(() => submodulesOf(entry("lib", "../../etc"))).toThrow(/path/);
    expect(() => submodulesOf(entry("lib", "/abs"))).toThrow(/path/);
    expect(() => submodulesOf([["submodule.lib.path", "x"]])).toThrow(/no url/);
  });

  it("pins the LFS endpoint the way git-lfs derives it", () => {
    expect(lfsEndpoint(APP)).toBe("https://git.example.com/acme/shop.git/info/lfs");
    expect(lfsEndpoint("https://git.example.com/acme/shop")).toBe("https://git.example.com/acme/shop.git/info/lfs");
  });
});
