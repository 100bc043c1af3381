import { defineConfig } from "vitest/config";

// Fault-injection suite (issue 12): real podman + runsc, Caddy and Redis, with something killed or cut off on purpose:
// the bot process, its Caddy or Redis (data-plane, under load to two apps), Slack (slack-down), the bot mid-build
// (bot-crash), a running build (cancel), an app's container or image (app-restart), an app that dies at start
// (crash-output). Enabled explicitly with `npm run test:faults`; .ci/run runs it after the e2e suite.
export default defineConfig({
  test: {
    include: ["test/faults/**/*.test.ts"],
    testTimeout: 180_000,
    hookTimeout: 900_000,
    pool: "forks",
    fileParallelism: false,
  },
});
