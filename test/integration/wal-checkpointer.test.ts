import { statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startCheckpointer } from "../../src/db/checkpointer.ts";
import { openDb } from "../../src/db/client.ts";
import { memoryLogger, tempDir, waitFor } from "../helpers/fixtures.ts";

const dir = tempDir("tussilago-wal-");
afterEach(() => dir.cleanup());

describe("WAL checkpointer thread", () => {
  it("copies committed pages into the database file without the connection checkpointing itself", async () => {
    const path = join(dir.path, "t.sqlite3");
    const db = openDb(path);
    const checkpointer = startCheckpointer(db, path, memoryLogger("silent").logger, 50);
    try {
      db.$client.exec("create table blobs (id integer primary key, body text not null)");
      const before = statSync(path).size;
      const insert = db.$client.prepare("insert into blobs (body) values (?)");
      // ~2,000 pages: under the connection's own backstop, so only the thread can move them into the file.
      for (let i = 0; i < 1000; i++) insert.run("x".repeat(7_000));
      await waitFor(() => statSync(path).size > before + 5_000_000, 10_000);
      expect(db.$client.pragma("wal_autocheckpoint", { simple: true })).toBe(20_000);
      expect(db.$client.prepare("select count(*) from blobs").pluck().get()).toBe(1000);
    } finally {
      await checkpointer.stop();
      db.$client.close();
    }
  });
});
