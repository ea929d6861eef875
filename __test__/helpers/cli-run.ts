// Test helpers for the command-line tools: running a command to its exit with
// stdout/stderr captured in files (so a daemon that detaches and keeps them
// cannot hold the test up), a server that never answers, and what /proc says
// about a process.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { REPO_ROOT } from './processes.js';

/** Our spiped-native executable, as built by `npm run build:ts`. */
export const OUR_SPIPED_NATIVE = join(REPO_ROOT, 'dist/cli/spiped-native.js');

/** How a command ended and what it wrote. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  stderrPath: string; // the file stderr went to (a detached daemon keeps writing there)
}

/** Options of runCli(). */
export interface RunOptions {
  dir: string; // where the output files go (a test's temp dir)
  stdin?: Buffer | string; // bytes for standard input (else /dev/null)
  timeoutMs?: number; // SIGKILL after this long (default 15 s)
  cwd?: string;
  env?: Record<string, string>; // added to this process's environment
}

let runs = 0;

/** Runs `command args` to its exit; `node:` as command runs one of our .js files with this Node. */
export function runCli(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const id = `run-${process.pid}-${runs++}`;
  const outPath = join(options.dir, `${id}.out`);
  const errPath = join(options.dir, `${id}.err`);
  const out = openSync(outPath, 'w');
  const err = openSync(errPath, 'w');
  const [file, argv] = command.endsWith('.js') ? [process.execPath, [command, ...args]] : [command, [...args]];
  const child = spawn(file, argv, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: [options.stdin === undefined ? 'ignore' : 'pipe', out, err],
  });
  closeSync(out);
  closeSync(err);
  if (options.stdin !== undefined) {
    child.stdin!.on('error', () => {}); // a child that exits without reading all of it (EPIPE) is the test's business, not a crash
    child.stdin!.end(options.stdin);
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 15000);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: readFileSync(outPath), stderr: readFileSync(errPath, 'utf8'), stderrPath: errPath });
    });
  });
}

/** True while process `pid` exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** Polls `condition` every 25 ms; resolves true once it holds, false after `timeoutMs`. */
export async function waitUntil(condition: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return true;
}

/** Sends SIGKILL to `pid` if it still exists (teardown of detached daemons). */
export function killIfAlive(pid: number | undefined): void {
  if (pid === undefined || !isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** A field of /proc/<pid>/status, e.g. "Uid" -> ["65534", "65534", "65534", "65534"]. */
export function procStatus(pid: number, field: string): string[] {
  const match = new RegExp(`^${field}:[ \\t]*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match === null ? [] : match[1]!.split(/\s+/).filter((word) => word !== '');
}

/** The number of file descriptors open in process `pid` (/proc/<pid>/fd). */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The resident set size of process `pid` in MiB (VmRSS of /proc/<pid>/status). */
export function rssMiB(pid: number): number {
  const [kiB] = procStatus(pid, 'VmRSS');
  if (kiB === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kiB) / 1024;
}

/** Polls fdCount(pid) until it is at most `baseline`; resolves to the last count (above `baseline` after `timeoutMs`). */
export async function fdsSettle(pid: number, baseline: number, timeoutMs = 5000): Promise<number> {
  await waitUntil(() => fdCount(pid) <= baseline, timeoutMs);
  return fdCount(pid);
}

/** A server that accepts connections and never sends a byte (holds them until closed). */
export function startSilentServer(): Promise<{ server: Server; port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port, sockets }));
  });
}

/** Closes a server and every connection it holds. */
export function closeServer(server: Server, sockets: readonly Socket[] = []): Promise<void> {
  for (const socket of sockets) socket.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Our usage text with the -b we add removed, to compare with the reference's. */
export function withoutBindOption(text: string): string {
  return text.replace(' [-b <bind address>]', '');
}

/** Maps `items` through `fn` with at most `limit` running at once (keeps a loaded machine from timing out). */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Kills, when the test ends (through `teardown`), the daemon whose pid `pidfile` will hold. */
export function killAtTeardown(t: { teardown: (fn: () => void) => void }, pidfile: string): void {
  t.teardown(() => {
    if (existsSync(pidfile)) killIfAlive(Number(readFileSync(pidfile, 'utf8')));
  });
}
