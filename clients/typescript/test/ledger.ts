// A real `planledger serve` for the tests: the binary cargo built (PLANLEDGER_BIN, or
// $CARGO_TARGET_DIR/debug/planledger, or the workspace's target/debug/planledger), on a fresh
// SQLite file, bound to a free port.

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export interface Ledger {
  url: string;
  serviceToken: string;
  adminToken: string;
  stop: () => Promise<void>;
}

export function binary(): string {
  const candidates = [
    process.env.PLANLEDGER_BIN,
    process.env.CARGO_TARGET_DIR && join(process.env.CARGO_TARGET_DIR, "debug", "planledger"),
    // dist/test/ledger.js → the workspace root.
    resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "target", "debug", "planledger"),
  ].filter((path): path is string => Boolean(path));
  const found = candidates.find((path) => existsSync(path));
  if (!found) {
    throw new Error(`no planledger binary (build it with cargo build -p planledger); looked at ${candidates.join(", ")}`);
  }
  return found;
}

export async function startLedger(env: Record<string, string> = {}): Promise<Ledger> {
  const dir = mkdtempSync(join(tmpdir(), "planledger-ts-"));
  const serviceToken = `svc-${randomBytes(12).toString("hex")}`;
  const adminToken = `adm-${randomBytes(12).toString("hex")}`;
  const child: ChildProcess = spawn(binary(), ["serve"], {
    env: {
      ...process.env,
      PLANLEDGER_DATABASE_URL: `sqlite://${join(dir, "ledger.db")}`,
      PLANLEDGER_BIND: "127.0.0.1:0",
      PLANLEDGER_TOKENS: `app:service:${serviceToken},ops:admin:${adminToken}`,
      // The example app receives notifications on loopback.
      PLANLEDGER_WEBHOOK_ALLOW: "127.0.0.1/32",
      RUST_LOG: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((found, failed) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => failed(new Error("planledger did not start in 30 s")), 30_000);
    lines.on("line", (line) => {
      const match = /^planledger listening on (\S+)/.exec(line);
      if (match?.[1]) {
        clearTimeout(timer);
        found(match[1]);
      }
    });
    child.once("exit", (code) => failed(new Error(`planledger exited with ${code}`)));
  });
  return {
    url,
    serviceToken,
    adminToken,
    stop: async () => {
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
