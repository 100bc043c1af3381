import { defineConfig } from "vitest/config";

// Default suite: unit + integration (real Redis/SQLite/PostgreSQL, never real podman/runsc/Caddy/Slack/GitHub).
export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts", "test/integration/**/*.test.ts"],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: "forks",
    restoreMocks: true,
  },
});
