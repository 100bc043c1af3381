import { defineConfig } from "vitest/config";

// Fault-injection suite (issue 12): a real bot process, podman + runsc, Caddy and Redis, killed on purpose while a
// load generator runs. Enabled explicitly with `npm run test:faults`; .ci/run runs it after the e2e suite.
export default defineConfig({
  test: {
    include: ["test/faults/**/*.test.ts"],
    testTimeout: 180_000,
    hookTimeout: 900_000,
    pool: "forks",
    fileParallelism: false,
  },
});
