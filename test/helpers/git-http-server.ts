import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Runner } from "../../src/infra/runner.ts";

/**
 * A real smart-HTTP git server for tests: Node's https server in front of `git http-backend` (CGI), serving the bare
 * repositories under `root`. It records every request (host, path, Authorization header), so a test can tell which
 * repository saw a token, and answers 401 (Basic challenge) without the expected credentials for `privateRepos`.
 * The certificate is self-signed for 127.0.0.1 and localhost: two host names for one server, i.e. "another host".
 */

export interface SeenRequest {
  host: string;
  repo: string;
  path: string;
  authorization: string | undefined;
}

export interface GitHttpServer {
  port: number;
  /** PEM of the self-signed certificate, for git's http.sslCAInfo. */
  caFile: string;
  requests: SeenRequest[];
  close: () => Promise<void>;
}

export async function startGitHttpServer(options: {
  runner: Runner;
  root: string;
  certDir: string;
  privateRepos: readonly string[];
  username: string;
  token: string;
}): Promise<GitHttpServer> {
  const keyFile = join(options.certDir, "key.pem");
  const caFile = join(options.certDir, "cert.pem");
  await options.runner.run(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      caFile,
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ],
    { timeoutMs: 30_000 },
  );
  const expected = `Basic ${Buffer.from(`${options.username}:${options.token}`).toString("base64")}`;
  const requests: SeenRequest[] = [];
  const server: Server = createServer({ key: await readFile(keyFile), cert: await readFile(caFile) }, (req, res) => {
    const url = new URL(req.url ?? "/", "https://placeholder");
    const repo = /^\/([^/]+\.git)(?:\/|$)/.exec(url.pathname)?.[1] ?? "";
    requests.push({
      host: req.headers.host ?? "",
      repo,
      path: url.pathname,
      authorization: req.headers.authorization,
    });
    if (options.privateRepos.includes(repo) && req.headers.authorization !== expected) {
      res.writeHead(401, { "WWW-Authenticate": 'Basic realm="git"' }).end();
      return;
    }
    const cgi = spawn("git", ["http-backend"], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        GIT_CONFIG_NOSYSTEM: "1",
        GIT_CONFIG_GLOBAL: "/dev/null",
        GIT_PROJECT_ROOT: options.root,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.replace(/^\?/, ""),
        REQUEST_METHOD: req.method ?? "GET",
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        HTTP_CONTENT_ENCODING: req.headers["content-encoding"] ?? "",
        GIT_PROTOCOL: String(req.headers["git-protocol"] ?? ""),
        REMOTE_ADDR: "127.0.0.1",
      },
      stdio: ["pipe", "pipe", "ignore"],
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on("data", (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
        const i = line.indexOf(":");
        const name = line.slice(0, i).trim();
        const value = line.slice(i + 1).trim();
        if (name.toLowerCase() === "status") status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
    });
    cgi.on("close", () => res.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    caFile,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
