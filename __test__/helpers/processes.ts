// Test helpers for real daemons on loopback: free ports, our CLI and the
// reference C binaries as child processes, an echo server, a tampering relay,
// and a client that sends bytes and collects the reply.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes, randomInt } from 'node:crypto';
import type { Endpoint } from 'spiped-native';
import { acceptChannels, dialChannel, type Channel } from 'spiped-native/channel';

/** The repository root (tests run from build/__test__/...). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Our CLIs, as built by `npm run build:ts`. */
export const OUR_SPIPED = join(REPO_ROOT, 'dist/cli/spiped.js');
export const OUR_SPIPE = join(REPO_ROOT, 'dist/cli/spipe.js');
/** The reference binaries (Debian's spiped package). */
export const C_SPIPED = '/usr/bin/spiped';
export const C_SPIPE = '/usr/bin/spipe';

/** Which implementation of a tool to run. */
export type Impl = 'ours' | 'c';

/** True when the reference binaries are installed; throws when SPIPED_INTEROP=required and they are not. */
export function referenceAvailable(): boolean {
  const present = existsSync(C_SPIPED) && existsSync(C_SPIPE);
  if (!present && process.env.SPIPED_INTEROP === 'required') {
    throw new Error('SPIPED_INTEROP=required but /usr/bin/spiped or /usr/bin/spipe is missing (apt-get install -y spiped)');
  }
  return present;
}

/** A fresh temp dir, removed by the returned cleanup. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'spiped-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes a key file of `length` random bytes into `dir`; returns its path. */
export function writeKey(dir: string, name = 'key', length = 32): string {
  const path = join(dir, name);
  writeFileSync(path, randomBytes(length), { mode: 0o600 });
  return path;
}

/**
 * Ports for daemons under test come from below the kernel's ephemeral range, so
 * no `listen(0)` or outgoing connection of a concurrently running test file can
 * take one between our check and the daemon's bind(). Each port is claimed with
 * an O_EXCL lock file shared by every ava worker, so two test files never get
 * the same one; a claim older than PORT_CLAIM_TTL_MS counts as free again.
 */
const PORT_LOCK_DIR = join(tmpdir(), 'spiped-native-test-ports');
const PORT_CLAIM_TTL_MS = 10 * 60 * 1000;

/** The [first, last] ports tests may claim: from 20000 up to just below the ephemeral range. */
function claimablePorts(): [number, number] {
  const [ephemeralLow = 32768] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  return [Math.max(1025, Math.min(20000, ephemeralLow - 1000)), ephemeralLow - 1];
}

/** Claims `port` for this test run via its lock file; false when another claim is live. */
function claimPort(port: number): boolean {
  const lock = join(PORT_LOCK_DIR, String(port));
  try {
    closeSync(openSync(lock, 'wx'));
    return true;
  } catch {
    try {
      if (Date.now() - statSync(lock).mtimeMs < PORT_CLAIM_TTL_MS) return false;
      rmSync(lock, { force: true });
      closeSync(openSync(lock, 'wx'));
      return true;
    } catch {
      return false;
    }
  }
}

/** True when a listener can bind `port` on `host` right now. */
function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** Resolves to a TCP port on `host` claimed for this caller alone (see PORT_LOCK_DIR) and bindable now. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  mkdirSync(PORT_LOCK_DIR, { recursive: true });
  const [first, last] = claimablePorts();
  const span = last - first + 1;
  const start = randomInt(span);
  for (let i = 0; i < span; i += 1) {
    const port = first + ((start + i) % span);
    if (claimPort(port) && (await canBind(port, host))) return port;
  }
  throw new Error(`no free port in ${first}-${last}`);
}

/** The socket inodes open in process `pid` (empty once it has exited). */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (match) inodes.add(match[1]!);
      } catch {
        // the fd closed while we looked
      }
    }
  } catch {
    // the process is gone
  }
  return inodes;
}

/**
 * True when a socket is listening at `address` (and, given `pid`, that process
 * holds it), read from /proc: no probe connection, which a daemon would serve.
 */
function isListening(address: { port: number; host?: string } | { path: string }, pid?: number): boolean {
  if ('path' in address) {
    try {
      return statSync(address.path).isSocket();
    } catch {
      return false;
    }
  }
  const port = address.port.toString(16).toUpperCase().padStart(4, '0');
  const owned = pid === undefined ? undefined : socketInodes(pid);
  return ['/proc/net/tcp', '/proc/net/tcp6'].some((table) =>
    readFileSync(table, 'utf8')
      .split('\n')
      .some((line) => {
        const fields = line.trim().split(/\s+/);
        const listening = fields[1]?.endsWith(`:${port}`) === true && fields[3] === '0A'; // 0A = LISTEN
        return listening && (owned === undefined || owned.has(fields[9] ?? ''));
      }),
  );
}

/** Resolves once something (given `pid`, that process) listens at `address` (port or Unix path), or rejects after `timeoutMs`. */
export async function waitForListener(
  address: { port: number; host?: string } | { path: string },
  timeoutMs = 5000,
  pid?: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!isListening(address, pid)) {
    if (Date.now() > deadline) throw new Error(`nothing listening at ${JSON.stringify(address)}${pid === undefined ? '' : ` in pid ${pid}`}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A daemon child process with its collected stderr. */
export interface Daemon {
  child: ChildProcess;
  stderr: () => string;
  stop: () => Promise<void>;
}

/** Starts spiped (ours or C) in the foreground with `args` (and `env` added to ours) and waits until it listens at `listen`. */
export async function startDaemon(
  impl: Impl,
  args: string[],
  listen: { port: number; host?: string } | { path: string },
  env: NodeJS.ProcessEnv = {},
): Promise<Daemon> {
  const child =
    impl === 'ours'
      ? spawn(process.execPath, [OUR_SPIPED, '-F', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } })
      : spawn(C_SPIPED, ['-F', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await Promise.race([
      waitForListener(listen, 5000, child.pid),
      exited.then(() => Promise.reject(new Error(`${impl} spiped exited early: ${stderr}`))),
    ]);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    child,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/** An echo server: every connection gets its bytes back, and its EOF after them; `open()` counts connections not yet closed. */
export function startEchoServer(): Promise<{ server: Server; port: number; connections: () => number; open: () => number }> {
  let connections = 0;
  let open = 0;
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    connections += 1;
    open += 1;
    socket.on('error', () => {});
    socket.once('close', () => (open -= 1));
    socket.pipe(socket);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as AddressInfo).port, connections: () => connections, open: () => open }),
    );
  });
}

/** A sink server: records what each connection sent before it ended or broke. */
export function startSinkServer(): Promise<{ server: Server; port: number; received: Buffer[] }> {
  const received: Buffer[] = [];
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const parts: Buffer[] = [];
    const index = received.push(Buffer.alloc(0)) - 1;
    socket.on('data', (chunk: Buffer) => {
      parts.push(chunk);
      received[index] = Buffer.concat(parts);
    });
    socket.on('error', () => {});
    socket.on('end', () => socket.end());
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port, received }));
  });
}

/** What a client saw: the bytes it received and how the connection ended. */
export interface Exchange {
  received: Buffer;
  ended: 'eof' | 'error' | 'timeout';
}

/** Connects to `address`, writes `data`, half-closes, and collects the reply until EOF, an error, or `timeoutMs`. */
export function exchange(
  address: { port: number; host?: string } | { path: string },
  data: Buffer,
  timeoutMs = 10000,
): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket: Socket =
      'path' in address
        ? connect({ path: address.path, allowHalfOpen: true })
        : connect({ port: address.port, host: address.host ?? '127.0.0.1', allowHalfOpen: true });
    const parts: Buffer[] = [];
    let done = false;
    const finish = (ended: Exchange['ended']): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ received: Buffer.concat(parts), ended });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    socket.on('data', (chunk: Buffer) => parts.push(chunk));
    socket.on('end', () => finish('eof'));
    socket.on('error', () => finish('error'));
    socket.on('close', () => finish('error'));
    socket.on('connect', () => socket.end(data));
  });
}

/** How a relay may damage traffic: flip bit `bit` of the byte at `offset` of one direction's stream. */
export interface Tamper {
  direction: 'toServer' | 'toClient';
  offset: number;
  bit?: number;
}

/**
 * One direction of a relay: each chunk from `from` goes to `onChunk` with the
 * count of bytes of this direction before it (`onChunk` writes it to `to`, or
 * not); EOF is passed on as a FIN, an error or a reset destroys `to`.
 */
export function relayDirection(from: Socket, to: Socket, onChunk: (chunk: Buffer, seen: number) => void): void {
  let seen = 0;
  from.on('data', (chunk: Buffer) => {
    onChunk(chunk, seen);
    seen += chunk.length;
  });
  from.on('end', () => to.end());
  from.on('error', () => to.destroy());
  from.on('close', (hadError) => hadError && to.destroy());
}

/** A TCP relay from `listenPort` to `targetPort` that flips one bit, as `tamper` says, in its first connection only. */
export function startRelay(listenPort: number, targetPort: number, firstTamper: Tamper | null): Promise<Server> {
  let connections = 0;
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const tamper = connections++ === 0 ? firstTamper : null;
    const upstream = connect({ port: targetPort, host: '127.0.0.1', allowHalfOpen: true });
    const forward = (from: Socket, to: Socket, direction: Tamper['direction']): void =>
      relayDirection(from, to, (chunk, seen) => {
        if (tamper !== null && tamper.direction === direction && tamper.offset >= seen && tamper.offset < seen + chunk.length) {
          chunk = Buffer.from(chunk);
          chunk[tamper.offset - seen]! ^= 1 << (tamper.bit ?? 0);
        }
        to.write(chunk);
      });
    forward(client, upstream, 'toServer');
    forward(upstream, client, 'toClient');
  });
  return new Promise((resolve) => {
    server.listen(listenPort, '127.0.0.1', () => resolve(server));
  });
}

/** A connected pair of loopback sockets [client side, accepted side], half-open capable; the accepted side starts paused. */
export function socketPair(): Promise<[Socket, Socket]> {
  return new Promise((resolve) => {
    let client: Socket;
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (accepted) => {
      server.close();
      resolve([client, accepted]);
    });
    server.listen(0, '127.0.0.1', () => {
      client = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    });
  });
}

/** A connected pair of loopback Channels [dialed side, accepted side], as the daemon gets them (on libuv handles unless SPIPED_NATIVE_RAW_SOCKETS=0); neither reads until resumed. */
export function channelPair(): Promise<[Channel, Channel]> {
  return new Promise((resolve, reject) => {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
    let dialed: Promise<Channel> | null = null;
    server.listen(0, '127.0.0.1', () => {
      acceptChannels(
        server,
        (accepted) => {
          server.close();
          dialed!.then((client) => resolve([client, accepted]), reject);
        },
        reject,
      );
      dialed = dialChannel({ kind: 'inet', address: '127.0.0.1', family: 4, port: (server.address() as AddressInfo).port }, null, () => {});
    });
  });
}

/** Runs a spipe (ours or C) with `data` on stdin; resolves to its stdout, stderr and exit code. */
export function runSpipe(impl: Impl, args: string[], data: Buffer): Promise<{ stdout: Buffer; stderr: string; code: number | null }> {
  const child =
    impl === 'ours' ? spawn(process.execPath, [OUR_SPIPE, ...args]) : spawn(C_SPIPE, args);
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.on('error', () => {});
  child.stdin.end(data);
  return new Promise((resolve) => child.on('close', (code) => resolve({ stdout: Buffer.concat(out), stderr, code })));
}

/** A 127.0.0.1 endpoint. */
export const loopbackEndpoint = (port: number): Endpoint => ({ kind: 'inet', address: '127.0.0.1', family: 4, port });

/** The fixed options of a -f Dispatcher on a free loopback port in `mode` holding `keys` (add target, targets, limits). */
export const fastDispatcherBase = (mode: 'encrypt' | 'decrypt', keys: Buffer[]) =>
  ({
    mode,
    keys,
    fast: true,
    requirePfs: false,
    timeoutMs: 5000,
    keepAlive: true,
    bind: null,
    source: loopbackEndpoint(0),
    proxyProtocol: null,
  }) as const;

/** The usual setup of a daemon-pair test: a temp dir with a key, a sink server, two claimed ports, and a list of daemons; all stopped or removed through `teardown`. */
export async function sinkPairSetup(teardown: (fn: () => unknown) => void): Promise<{ dir: string; key: string; sink: Awaited<ReturnType<typeof startSinkServer>>; dPort: number; ePort: number; daemons: Daemon[] }> {
  const { dir, cleanup } = tempDir();
  teardown(cleanup);
  const key = writeKey(dir);
  const sink = await startSinkServer();
  teardown(() => sink.server.close());
  const [dPort, ePort] = [await freePort(), await freePort()];
  const daemons: Daemon[] = [];
  teardown(() => Promise.all(daemons.map((daemon) => daemon.stop())));
  return { dir, key, sink, dPort, ePort, daemons };
}

/** Spawns `file args` with stderr piped and collected (stdin and stdout ignored unless `stdio` says otherwise). */
export function spawnCollecting(file: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; extraFds?: readonly number[] } = {}): { child: ChildProcess; stderr: () => string } {
  const child = spawn(file, [...args], { stdio: ['ignore', 'ignore', 'pipe', ...(options.extraFds ?? [])], env: options.env ?? process.env });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return { child, stderr: () => stderr };
}
