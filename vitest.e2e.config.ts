import { defineConfig } from "vitest/config";

// End-to-end suite: real podman + runsc + Caddy + Redis. Enabled explicitly with `npm run test:e2e`.
export default defineConfig({
  test: {
    include: ["test/e2e/**/*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 900_000,
    pool: "forks",
    fileParallelism: false,
  },
});
