import { defineConfig } from "drizzle-kit";

// Only used by `drizzle-kit generate` / `npm run db:check`; the bot applies the checked-in SQL itself.
export default defineConfig({
  dialect: "sqlite",
  schema: "./src/db/schema.ts",
  out: "./drizzle",
  casing: "snake_case",
});
