#!/usr/bin/env node
import { processOutput } from "./cli/output.ts";
import { runCli } from "./cli/run.ts";

// exitCode, not exit(): stdout may still be flushing into a pipe. Every resource is closed, so the process ends.
process.exitCode = await runCli(process.argv.slice(2), { env: process.env, output: processOutput() });
