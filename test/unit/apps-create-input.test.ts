import { afterEach, describe, expect, it } from "vitest";
import { createAppCommand } from "../../commands/apps.ts";
import type { NewApp } from "../../src/domain/apps.ts";
import { DomainError } from "../../src/domain/errors.ts";
import { isValidHostname } from "../../src/infra/caddy-config.ts";
import { memoryLogger, tempDb } from "../helpers/fixtures.ts";

// `apps create` refuses at once what the pipeline would refuse at the first deploy.

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup() {
  const t = tempDb();
  cleanups.push(t.cleanup);
  const { logger } = memoryLogger("silent");
  const create = (input: Partial<NewApp> & { slug: string }) =>
    createAppCommand(
      { db: t.db, log: logger },
      { gitUrl: `https://git.example.com/${input.slug}.git`, domain: `${input.slug}.example.com`, ...input },
    );
  return { create };
}

function refusal(fn: () => unknown): DomainError {
  try {
    fn();
  } catch (err) {
    if (err instanceof DomainError) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("apps create input", () => {
  it.each([
    ["10.0.0.1", "domain must be a DNS name, not an IP address"],
    ["shop.example.123", "domain must be a DNS name, not an IP address"],
    ["Shop.Example.com", "domain must be a lowercase DNS name such as app.example.com"],
    ["localhost", "domain must be a lowercase DNS name such as app.example.com"],
    ["*.example.com", "domain must be a lowercase DNS name such as app.example.com"],
    ["shop.example.com.", "domain must be a lowercase DNS name such as app.example.com"],
    ["https://shop.example.com", "domain must be a lowercase DNS name such as app.example.com"],
  ])("refuses the domain %j at once, as the proxy would at the deploy", (domain, message) => {
    const { create } = setup();
    const err = refusal(() => create({ slug: "shop", domain }));
    expect(err).toMatchObject({ status: 422, message });
    expect(isValidHostname(domain)).toBe(false);
  });

  it("accepts every domain the proxy accepts", () => {
    const { create } = setup();
    for (const [i, domain] of ["shop.example.com", "a.b", "x-1.example.co.uk", "1shop.example.com"].entries()) {
      expect(isValidHostname(domain)).toBe(true);
      expect(create({ slug: `app${i}x`, domain }).domain).toBe(domain);
    }
  });

  it("refuses a duplicate domain with 409, naming it", () => {
    const { create } = setup();
    create({ slug: "shop", domain: "shop.example.com" });
    expect(refusal(() => create({ slug: "shop2", domain: "shop.example.com" }))).toMatchObject({
      status: 409,
      message: "domain shop.example.com is taken",
    });
  });

  it("refuses a file:// URL unless the bot allows them", () => {
    const { create } = setup();
    expect(refusal(() => create({ slug: "shop", gitUrl: "file:///srv/repo" })).status).toBe(422);
  });
});
