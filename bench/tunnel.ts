// Owns the tunnel benchmark, `node build/bench/tunnel.js` (npm run bench:tunnel):
// an encrypting and a decrypting daemon on loopback (client -> E(-e) -> D(-d) -> server),
// ours (`node dist/cli/spiped.js`) and the C reference (/usr/bin/spiped), launched alike
// as separate foreground processes (-F -n 0) with the same key and flags, and measured
// alike from this process (which is the load: source, sink, echo server and clients):
//   bulk MB/s of plaintext through the pair (one direction), the daemons' CPU seconds
//   and peak RSS during it; sequential connections/s with PFS and with -f (connect,
//   1 byte, its echo, clean close); 1-byte echo round-trip p50/p99 over one connection
//   per pair, the pairs taking turns of 250 round trips so that drift on this shared
//   machine lands on each alike. The round-trip phase also runs the Node relay (build/bench/tunnel-null.js: the same
// sockets and reads as our daemon, no handshake, no crypto), the floor any Node daemon
// pays here. The junk phase (--phases junk, not in the default set) floods a fresh
// decrypting daemon of each implementation (-d -n 0 -o 5, target: the echo server)
// with connections that never complete a handshake: (a) silent, closed once the
// daemon's nonce arrived; (b) 400 random bytes; (c) a bare 32-byte nonce, then FIN;
// it reports each daemon's CPU ms (utime+stime) per junk connection, cold (the
// first --junk-cold connections of a freshly started daemon) and warm (--junk-count
// connections after as many more unmeasured), and the daemon's VmRSS idle and while
// it holds --junk-silent silent connections at once.
// The connection phase also runs CONCURRENT_CLIENTS (16) clients at once, and prints CPU
// ms per connection for both handshake kinds. The cold phase starts a fresh PFS pair per
// implementation, each moves 1 MiB and serves 50 connections, then their first 1500
// round trips are timed with no warm-up by the bench, the pairs taking turns of 500
// (and it reports D's start-up time to listening). Ours warms itself up once
// listening (src-ts/warm-up.ts; SPIPED_NATIVE_WARM_UP=0 in the environment turns that off).
// Prints a table (ours, C, ours/C, relay, relay/C, ours/relay) and the crypto backend;
// --json prints one object.
// Options: --size <MiB> (1024), --quick, --json, --only ours|c, --no-relay, --rounds <n> (median,
// order alternates), --phases bulk,rtt,conn,cold,junk (default bulk,rtt,conn,cold), --conn-seconds <s> (3, plus as long a
// warm-up), --rtt-count <n> (10000 round trips per pair, after 2000 more), and for profiling/A-B runs only:
// --node-arg <flag> (repeatable, e.g. --cpu-prof), --ours-cli <path to spiped.js>, and --ab <another
// build's spiped.js>, measured as 'old' in the same rounds (columns old, ours/old).
// Junk phase: --junk-count <n> (2000 warm), --junk-cold <n> (500), --junk-silent <n> (500 held
// for the RSS figure), --junk-concurrency <n> (8 in flight: the C daemon listens with a
// backlog of 10, and an overflowing accept queue would delay its connections by seconds).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cryptoBackend } from 'spiped-native';

/** Package root: build/bench/tunnel.js -> ../../ */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const C_SPIPED = '/usr/bin/spiped';

type Impl = 'ours' | 'c' | 'relay' | 'old';
const RELAY_CLI = join(ROOT, 'build/bench/tunnel-null.js');
type Phase = 'bulk' | 'rtt' | 'conn' | 'cold' | 'junk';
const ALL_PHASES: readonly Phase[] = ['bulk', 'rtt', 'conn', 'cold', 'junk'];
/** The phases run without --phases (junk is asked for by name). */
const DEFAULT_PHASES: readonly Phase[] = ['bulk', 'rtt', 'conn', 'cold'];

/** Command-line options of the benchmark. */
interface Options {
  sizeMiB: number;
  quick: boolean;
  json: boolean;
  only: 'ours' | 'c' | null;
  relay: boolean; // run the Node relay in the round-trip phase (--no-relay: don't)
  rounds: number;
  phases: Phase[]; // --phases bulk,rtt,conn,junk (default bulk,rtt,conn)
  connSeconds: number;
  rttCount: number;
  junkCount: number; // junk connections per kind measured warm
  junkCold: number; // junk connections per kind measured on a fresh daemon (then as many more as warm-up)
  junkSilent: number; // silent connections held at once for the RSS figure
  junkConcurrency: number; // junk connections in flight
  oursCli: string; // our daemon's entry point (--ours-cli, default dist/cli/spiped.js), for A/B runs of a scratch build
  abCli: string | null; // --ab <another build's spiped.js>: measured as 'old' beside ours in the same rounds
  nodeArgs: string[]; // extra node flags for our daemons (--node-arg, e.g. --cpu-prof); breaks "launched alike", for profiling only
}

/** Parses argv into Options; exits 2 with a message on bad usage. */
function parseOptions(argv: readonly string[]): Options {
  const usage = (msg: string): never => {
    process.stderr.write(`tunnel bench: ${msg}\nusage: node build/bench/tunnel.js [--size <MiB>] [--quick] [--json] [--only ours|c] [--no-relay] [--rounds <n>]\n       [--phases bulk,rtt,conn,cold,junk] [--conn-seconds <s>] [--rtt-count <n>] [--node-arg <flag>]... [--ours-cli <file.js>] [--ab <old spiped.js>]\n       [--junk-count <n>] [--junk-cold <n>] [--junk-silent <n>] [--junk-concurrency <n>]\n`);
    process.exit(2);
  };
  let size: number | null = null;
  let quick = false;
  let json = false;
  let only: 'ours' | 'c' | null = null;
  let relay = true;
  let rounds = 1;
  let phases: Phase[] = [...DEFAULT_PHASES];
  let connSeconds: number | null = null;
  let rttCount: number | null = null;
  const junk = { count: null as number | null, cold: null as number | null, silent: null as number | null, concurrency: 8 };
  const count = (name: string, text: string): number => {
    const n = Number(text);
    return Number.isInteger(n) && n >= 1 ? n : usage(`${name} must be a positive integer`);
  };
  const nodeArgs: string[] = [];
  let oursCli = join(ROOT, 'dist/cli/spiped.js');
  let abCli: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => argv[++i] ?? usage(`${a} needs a value`);
    if (a === '--size') {
      size = Number(value());
      if (!Number.isInteger(size) || size <= 0) usage('--size must be a positive integer (MiB)');
    } else if (a === '--quick') quick = true;
    else if (a === '--json') json = true;
    else if (a === '--only') {
      const v = value();
      only = v === 'ours' || v === 'c' ? v : usage('--only takes ours or c');
    } else if (a === '--no-relay') relay = false;
    else if (a === '--rounds') {
      rounds = Number(value());
      if (!Number.isInteger(rounds) || rounds < 1) usage('--rounds must be a positive integer');
    } else if (a === '--conn-seconds') {
      connSeconds = Number(value());
      if (!(connSeconds > 0)) usage('--conn-seconds must be positive');
    } else if (a === '--phases') {
      const list = value().split(',');
      if (list.some((x) => !ALL_PHASES.includes(x as Phase))) usage(`--phases takes a list of ${ALL_PHASES.join(',')}`);
      phases = list as Phase[];
    } else if (a === '--rtt-count') {
      rttCount = Number(value());
      if (!Number.isInteger(rttCount) || rttCount < 1) usage('--rtt-count must be a positive integer');
    } else if (a === '--junk-count') junk.count = count(a, value());
    else if (a === '--junk-cold') junk.cold = count(a, value());
    else if (a === '--junk-silent') junk.silent = count(a, value());
    else if (a === '--junk-concurrency') junk.concurrency = count(a, value());
    else if (a === '--node-arg') nodeArgs.push(value());
    else if (a === '--ours-cli') oursCli = value();
    else if (a === '--ab') abCli = value();
    else usage(`unknown option ${a}`);
  }
  return {
    sizeMiB: size ?? (quick ? 64 : 1024),
    quick,
    json,
    only,
    relay: relay && only === null,
    rounds,
    phases,
    connSeconds: connSeconds ?? (quick ? 0.3 : 3),
    rttCount: rttCount ?? (quick ? 1000 : 10_000),
    junkCount: junk.count ?? (quick ? 200 : 2000),
    junkCold: junk.cold ?? (quick ? 100 : 500),
    junkSilent: junk.silent ?? (quick ? 100 : 500),
    junkConcurrency: junk.concurrency,
    oursCli,
    abCli,
    nodeArgs,
  };
}

const OPTS = parseOptions(process.argv.slice(2));

/** Writes a progress line to stderr (stdout stays clean for --json). */
function progress(s: string): void {
  process.stderr.write(`[tunnel] ${s}\n`);
}

// ---- /proc accounting -----------------------------------------------------------------

const CLK_TCK = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (utime+stime, all threads) of `pid` so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** A `VmXXX:` value of /proc/<pid>/status in MiB (NaN if missing). */
function vmMiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Resets VmHWM of `pid` to its current RSS (clear_refs 5); false if the kernel refuses. */
function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** True when some socket in /proc/net/tcp listens on 127.0.0.1:`port`. */
function isListening(port: number): boolean {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .some((line) => {
      const f = line.trim().split(/\s+/);
      return f[1] === hex && f[3] === '0A';
    });
}

// ---- small async helpers --------------------------------------------------------------

/** Resolves after `ms` milliseconds. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with `what` timed out if `p` takes longer than `ms`. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** A free TCP port on 127.0.0.1 (bound then released). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Connects to 127.0.0.1:`port` with TCP_NODELAY; resolves once connected. */
function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, noDelay: true });
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

// ---- the target server (this process) ---------------------------------------------------

type ServerMode = 'echo' | 'sink';

/** The server behind D: echoes (connection and RTT phases) or counts and discards (bulk). */
class TargetServer {
  readonly server: Server;
  mode: ServerMode = 'echo';
  /** Bytes discarded in sink mode since the last reset. */
  sunk = 0;
  /** Called whenever `sunk` grows (the bulk phase waits on it). */
  onSink: (() => void) | null = null;
  /** Open accepted sockets (destroyed by close()). */
  private readonly sockets = new Set<Socket>();

  /** Creates the (not yet listening) server. */
  constructor() {
    this.server = createServer({ noDelay: true }, (s) => this.accept(s));
  }

  /** Listens on 127.0.0.1:`port`. */
  listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve());
    });
  }

  /** Serves one accepted socket in the current mode. */
  private accept(s: Socket): void {
    s.on('error', () => {});
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    if (this.mode === 'echo') {
      s.on('data', (d: Buffer) => s.write(d));
    } else {
      s.on('data', (d: Buffer) => {
        this.sunk += d.length;
        this.onSink?.();
      });
    }
  }

  /** Stops listening and drops every connection. */
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// ---- daemons ----------------------------------------------------------------------------

/** One running daemon process. */
interface Daemon {
  name: string;
  child: ChildProcess;
  pid: number;
  stderr: string[];
  startupMs: number; // from spawn until it listened (polled every 2 ms)
}

/** The command line that runs `impl`'s spiped with `args` (launched the same way for both). */
function daemonCommand(impl: Impl, args: string[]): [string, string[]] {
  if (impl === 'ours') return [process.execPath, [...OPTS.nodeArgs, OPTS.oursCli, ...args]];
  if (impl === 'old') return [process.execPath, [...OPTS.nodeArgs, OPTS.abCli ?? OPTS.oursCli, ...args]];
  if (impl === 'relay') return [process.execPath, [RELAY_CLI, ...args]];
  return [C_SPIPED, args];
}

/** Starts one foreground daemon and waits until it listens on `listenPort`; throws with its stderr if it exits. */
async function startDaemon(impl: Impl, name: string, args: string[], listenPort: number): Promise<Daemon> {
  const [cmd, argv] = daemonCommand(impl, args);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
  let exited: string | null = null;
  child.once('exit', (code, signal) => (exited = `exited (${code ?? signal})`));
  child.once('error', (err) => (exited = err.message));
  const spawned = process.hrtime.bigint();
  const deadline = Date.now() + 10_000;
  while (!isListening(listenPort)) {
    if (exited !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} (${cmd} ${argv.join(' ')}) ${exited ?? 'did not listen within 10 s'}: ${stderr.join('')}`);
    }
    await sleep(2);
  }
  const startupMs = Number(process.hrtime.bigint() - spawned) / 1e6;
  if (child.pid === undefined) throw new Error(`${name}: no pid`);
  return { name, child, pid: child.pid, stderr, startupMs };
}

/** Stops a daemon (SIGTERM, then SIGKILL after 2 s) and waits for its exit. */
async function stopDaemon(d: Daemon): Promise<void> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => d.child.once('exit', () => resolve()));
  d.child.kill('SIGTERM');
  const killer = setTimeout(() => d.child.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(killer);
}

/** An encrypting and a decrypting daemon in front of the target server. */
interface Pair {
  impl: Impl;
  e: Daemon;
  d: Daemon;
  entryPort: number;
}

/** Starts D (-d, source dPort -> target) then E (-e, entry -> dPort) of `impl`, both -F with `extra` flags. */
async function startPair(impl: Impl, keyFile: string, targetPort: number, extra: string[]): Promise<Pair> {
  const entryPort = await freePort();
  const dPort = await freePort();
  const addr = (p: number): string => `[127.0.0.1]:${p}`;
  const common = ['-F', '-k', keyFile, '-n', '0', ...extra];
  const d = await startDaemon(impl, `${impl} D`, ['-d', '-s', addr(dPort), '-t', addr(targetPort), ...common], dPort);
  try {
    const e = await startDaemon(impl, `${impl} E`, ['-e', '-s', addr(entryPort), '-t', addr(dPort), ...common], entryPort);
    return { impl, e, d, entryPort };
  } catch (err) {
    await stopDaemon(d);
    throw err;
  }
}

/** Stops both daemons of a pair. */
async function stopPair(p: Pair): Promise<void> {
  await Promise.all([stopDaemon(p.e), stopDaemon(p.d)]);
}

/** Throws if either daemon of the pair has exited (with its stderr). */
function checkAlive(p: Pair): void {
  for (const d of [p.e, p.d]) {
    if (d.child.exitCode !== null || d.child.signalCode !== null) {
      throw new Error(`${d.name} died (${d.child.exitCode ?? d.child.signalCode}): ${d.stderr.join('')}`);
    }
  }
}

// ---- phases -----------------------------------------------------------------------------

/** Result of the bulk phase. */
interface BulkResult {
  mbps: number; // plaintext MB/s (1e6 bytes/s), first byte written to last byte sunk
  seconds: number;
  cpuE: number; // CPU seconds of E during the phase
  cpuD: number;
  cpuLoad: number; // CPU seconds of this process (source + sink) during the phase
  hwmE: number; // peak RSS MiB during the phase (from start if the reset was refused)
  hwmD: number;
}

const CHUNK = randomBytes(256 << 10);

/** Streams `bytes` of a reused random buffer through the pair into the sink; measures rate, CPU and peak RSS. */
async function bulk(p: Pair, server: TargetServer, bytes: number): Promise<BulkResult> {
  server.mode = 'sink';
  server.sunk = 0;
  const client = await dial(p.entryPort);
  client.on('error', () => {});
  // Warm-up (handshake, JIT, socket buffers): 16 MiB not counted.
  const warm = Math.min(16 << 20, bytes);
  await pump(client, warm);
  await waitSunk(server, warm, p);
  server.sunk = 0;
  resetPeakRss(p.e.pid);
  resetPeakRss(p.d.pid);
  const cpu0 = [cpuSeconds(p.e.pid), cpuSeconds(p.d.pid)];
  const self0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const done = waitSunk(server, bytes, p);
  await pump(client, bytes);
  await done;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const self = process.cpuUsage(self0);
  const result: BulkResult = {
    mbps: bytes / seconds / 1e6,
    seconds,
    cpuE: cpuSeconds(p.e.pid) - (cpu0[0] ?? 0),
    cpuD: cpuSeconds(p.d.pid) - (cpu0[1] ?? 0),
    cpuLoad: (self.user + self.system) / 1e6,
    hwmE: vmMiB(p.e.pid, 'VmHWM'),
    hwmD: vmMiB(p.d.pid, 'VmHWM'),
  };
  client.destroy();
  server.mode = 'echo';
  return result;
}

/** Writes `bytes` from the reused CHUNK to `s`, honouring backpressure; resolves once all is handed to the kernel queue. */
async function pump(s: Socket, bytes: number): Promise<void> {
  let left = bytes;
  while (left > 0) {
    const n = Math.min(left, CHUNK.length);
    left -= n;
    if (!s.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
      await new Promise<void>((resolve, reject) => {
        const onErr = (e: Error): void => reject(e);
        s.once('error', onErr);
        s.once('drain', () => {
          s.off('error', onErr);
          resolve();
        });
      });
    }
  }
}

/** Resolves once the sink has received `bytes`; rejects if a daemon dies or nothing arrives for 10 s. */
function waitSunk(server: TargetServer, bytes: number, p: Pair): Promise<void> {
  return new Promise((resolve, reject) => {
    let last = Date.now();
    const watchdog = setInterval(() => {
      try {
        checkAlive(p);
        if (Date.now() - last > 10_000) throw new Error(`bulk stalled at ${server.sunk} of ${bytes} bytes`);
      } catch (err) {
        clearInterval(watchdog);
        server.onSink = null;
        reject(err);
      }
    }, 250);
    const check = (): void => {
      last = Date.now();
      if (server.sunk >= bytes) {
        clearInterval(watchdog);
        server.onSink = null;
        resolve();
      }
    };
    server.onSink = check;
    check();
  });
}

/** One full connection: connect to E, send 1 byte, await its echo, end and await the clean close. */
function oneConnection(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, noDelay: true });
    let echoed = false;
    s.once('error', reject);
    s.once('connect', () => s.write('x'));
    s.on('data', () => {
      if (!echoed) {
        echoed = true;
        s.end();
      }
    });
    s.once('close', () => (echoed ? resolve() : reject(new Error('connection closed before the echo'))));
  });
}

/** Result of a connection-rate phase. */
interface ConnResult {
  perSecond: number;
  count: number;
  cpuE: number; // CPU milliseconds of E per connection
  cpuD: number;
}

/** Runs connections for `seconds`, `clients` at once (each opening the next as soon as its last closed), after as long a warm-up (Node's JIT needs seconds to settle); returns connections/s and CPU ms per connection. */
async function connectionRate(p: Pair, seconds: number, clients = 1): Promise<ConnResult> {
  const warmEnd = Date.now() + seconds * 1000;
  for (let i = 0; i < 20 || Date.now() < warmEnd; i++) await withTimeout(oneConnection(p.entryPort), 10_000, 'warm-up connection');
  const cpu0 = [cpuSeconds(p.e.pid), cpuSeconds(p.d.pid)];
  const t0 = process.hrtime.bigint();
  const end = t0 + BigInt(Math.round(seconds * 1e9));
  let count = 0;
  const client = async (): Promise<void> => {
    while (process.hrtime.bigint() < end) {
      await withTimeout(oneConnection(p.entryPort), 10_000, `connection #${count}`);
      count++;
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  checkAlive(p);
  return {
    perSecond: count / elapsed,
    count,
    cpuE: ((cpuSeconds(p.e.pid) - (cpu0[0] ?? 0)) / count) * 1000,
    cpuD: ((cpuSeconds(p.d.pid) - (cpu0[1] ?? 0)) / count) * 1000,
  };
}

/** Result of the round-trip phase, in microseconds. */
interface RttResult {
  p50: number;
  p99: number;
  mean: number;
  cpuE: number; // CPU µs of E per round trip
  cpuD: number;
}

/** Round trips before the measured ones (JIT tiering, socket buffers), for every implementation alike. */
const RTT_WARM_UP = 2000;
/** Round trips in a row on one pair before the next pair takes its turn. */
const RTT_BLOCK = 250;

/** A connection through one pair that times sequential 1-byte echoes. */
class EchoClient {
  private waiter: (() => void) | null = null;

  /** Wraps `socket`, connected to the pair's entry port. */
  constructor(private readonly socket: Socket) {
    socket.on('error', () => {});
    socket.on('data', () => {
      const w = this.waiter;
      this.waiter = null;
      w?.();
    });
  }

  /** One round trip of one byte; rejects after 10 s. */
  once(): Promise<void> {
    return withTimeout(
      new Promise<void>((resolve) => {
        this.waiter = resolve;
        this.socket.write('x');
      }),
      10_000,
      'round trip',
    );
  }

  /** `count` round trips, their times (µs) stored into `samples` from `offset`. */
  async timed(count: number, samples: Float64Array, offset: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const t0 = process.hrtime.bigint();
      await this.once();
      samples[offset + i] = Number(process.hrtime.bigint() - t0) / 1e3;
    }
  }

  /** Closes the connection. */
  close(): void {
    this.socket.destroy();
  }
}

/** The `q` quantile (0..1) of `sorted` (ascending), NaN if empty. */
function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** `count` timed round trips through each of `clients`, taken in turns of `block` with the order rotating (so that this machine's drift lands on each alike); returns each client's samples (µs), in order. */
async function timedInTurns(clients: readonly EchoClient[], count: number, block: number): Promise<Float64Array[]> {
  const samples = clients.map(() => new Float64Array(count));
  for (let done = 0, turn = 0; done < count; done += block, turn++) {
    const size = Math.min(block, count - done);
    for (let k = 0; k < clients.length; k++) {
      const i = (turn + k) % clients.length;
      await clients[i]!.timed(size, samples[i]!, done);
    }
  }
  return samples;
}

/**
 * `count` sequential 1-byte echoes through each pair (after RTT_WARM_UP unmeasured ones),
 * taken in turns of RTT_BLOCK with the order rotating, so that this machine's drift
 * (other tenants, frequency) lands on every implementation alike; returns, per pair,
 * percentiles in µs and each daemon's CPU µs per round trip.
 */
async function roundTrips(pairs: readonly Pair[], server: TargetServer, count: number): Promise<RttResult[]> {
  server.mode = 'echo';
  const clients = await Promise.all(pairs.map(async (p) => new EchoClient(await dial(p.entryPort))));
  try {
    for (const client of clients) for (let i = 0; i < RTT_WARM_UP; i++) await client.once();
    const cpu0 = pairs.map((p) => [cpuSeconds(p.e.pid), cpuSeconds(p.d.pid)] as const);
    const samples = await timedInTurns(clients, count, RTT_BLOCK);
    return pairs.map((p, i) => {
      const s = samples[i]!.sort();
      const pct = (q: number): number => percentile(s, q);
      const [e0, d0] = cpu0[i]!;
      return {
        p50: pct(0.5),
        p99: pct(0.99),
        mean: s.reduce((a, b) => a + b, 0) / count,
        cpuE: ((cpuSeconds(p.e.pid) - e0) / count) * 1e6,
        cpuD: ((cpuSeconds(p.d.pid) - d0) / count) * 1e6,
      };
    });
  } finally {
    for (const client of clients) client.close();
  }
}

/** The round-trip phase of one round: a fresh PFS pair per implementation, measured together by roundTrips(). */
async function runRoundTrips(impls: readonly Impl[], keyFile: string, server: TargetServer, targetPort: number): Promise<RttResult[]> {
  const pairs: Pair[] = [];
  try {
    for (const impl of impls) pairs.push(await startPair(impl, keyFile, targetPort, []));
    const results = await roundTrips(pairs, server, OPTS.rttCount);
    impls.forEach((impl, i) => progress(`${impl}: round trip p50 ${results[i]!.p50.toFixed(0)} µs`));
    return results;
  } finally {
    await Promise.all(pairs.map(stopPair));
  }
}

// ---- cold start -------------------------------------------------------------------------

/** Clients at once in the concurrent connection-rate runs. */
const CONCURRENT_CLIENTS = 16;
/** What a cold pair has done before its round trips are timed: one transfer of this many bytes, and this many connections. */
const COLD_BYTES = 1024 * 1024;
const COLD_CONNECTIONS = 50;
/** Round trips timed on a cold pair (all of them, no warm-up). */
const COLD_ROUND_TRIPS = 1500;

/** Result of the cold phase: a freshly started pair's first round trips, in microseconds, and its D's start-up. */
interface ColdResult {
  p50: number;
  p99: number;
  startupMs: number;
}

/** Sends `bytes` through the pair's echo and reads them back, then closes. */
function echoThrough(port: number, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, noDelay: true });
    let received = 0;
    s.once('error', reject);
    s.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received >= bytes) s.end();
    });
    s.once('close', () => (received >= bytes ? resolve() : reject(new Error(`echoed ${received} of ${bytes} bytes`))));
    s.once('connect', () => s.write(randomBytes(bytes)));
  });
}

/** Cold round trips timed in a row on one pair before the next pair takes its turn (large: the first round trip after a switch is slow for every implementation, and 1% of them would be the p99). */
const COLD_BLOCK = 500;

/**
 * The cold phase of one round: a fresh PFS pair per implementation (started one
 * after the other), each moves COLD_BYTES and serves COLD_CONNECTIONS
 * connections, then the pairs' first COLD_ROUND_TRIPS round trips are timed in
 * turns of COLD_BLOCK between them (as the round-trip phase does: this machine's
 * state drifts over seconds), with no warm-up by the bench.
 */
async function runColdRoundTrips(impls: readonly Impl[], keyFile: string, server: TargetServer, targetPort: number): Promise<ColdResult[]> {
  server.mode = 'echo';
  const pairs: Pair[] = [];
  try {
    for (const impl of impls) pairs.push(await startPair(impl, keyFile, targetPort, []));
    for (const pair of pairs) {
      await withTimeout(echoThrough(pair.entryPort, COLD_BYTES), 60_000, 'cold transfer');
      for (let i = 0; i < COLD_CONNECTIONS; i++) await withTimeout(oneConnection(pair.entryPort), 10_000, 'cold connection');
    }
    const clients = await Promise.all(pairs.map(async (p) => new EchoClient(await dial(p.entryPort))));
    let samples: Float64Array[];
    try {
      samples = await timedInTurns(clients, COLD_ROUND_TRIPS, COLD_BLOCK);
    } finally {
      for (const client of clients) client.close();
    }
    pairs.forEach(checkAlive);
    return pairs.map((pair, i) => {
      const sorted = samples[i]!.sort();
      const result = { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), startupMs: pair.d.startupMs };
      progress(`${pair.impl}: cold round trips p50 ${result.p50.toFixed(0)} µs, p99 ${result.p99.toFixed(0)} µs`);
      return result;
    });
  } finally {
    await Promise.all(pairs.map(stopPair));
  }
}

// ---- junk connections ---------------------------------------------------------------------

type JunkKind = 'silent' | 'random400' | 'nonce';
const JUNK_KINDS: readonly JunkKind[] = ['silent', 'random400', 'nonce'];
const NONCE_LEN = 32;

/** CPU milliseconds of a daemon per junk connection of one kind. */
interface JunkCost {
  cold: number; // over the first OPTS.junkCold connections of a freshly started daemon
  warm: number; // over OPTS.junkCount connections after 2 * OPTS.junkCold
}

/** Result of the junk phase for one implementation. */
interface JunkResult {
  cost: Record<JunkKind, JunkCost>;
  rssIdle: number; // VmRSS MiB of a fresh -d once listening
  rssSilent: number; // VmRSS MiB while it holds OPTS.junkSilent silent connections
  held: number; // how many of those were still open when VmRSS was read
}

/** The decrypting daemon the junk phase floods: the same flags for both implementations. */
function startJunkDaemon(impl: Impl, keyFile: string, targetPort: number, port: number): Promise<Daemon> {
  const addr = (p: number): string => `[127.0.0.1]:${p}`;
  const args = ['-d', '-F', '-s', addr(port), '-t', addr(targetPort), '-k', keyFile, '-n', '0', '-o', '5'];
  // The Node relay stands in as the floor: the least any Node -d does per junk connection.
  return startDaemon(impl, `${impl} junk D`, impl === 'relay' ? [...args, '--junk-floor'] : args, port);
}

/**
 * Opens a connection to `port` and misbehaves as `kind` says: 'silent' sends
 * nothing and closes once the daemon's nonce has arrived; 'random400' sends 400
 * random bytes and waits for the daemon to drop it; 'nonce' sends 32 random
 * bytes and a FIN. Resolves once the socket has closed, to the socket if `hold`
 * (a silent one is then left open once its nonce arrived); rejects after 10 s.
 */
function junkConnection(port: number, kind: JunkKind, hold = false): Promise<Socket> {
  const attempt = new Promise<Socket>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let connected = false;
    let received = 0;
    s.on('error', () => {}); // the daemon may reset it: one of the ends expected
    s.once('connect', () => {
      connected = true;
      if (kind === 'random400') s.write(randomBytes(400));
      else if (kind === 'nonce') s.end(randomBytes(NONCE_LEN));
    });
    s.on('data', (d: Buffer) => {
      received += d.length;
      if (kind !== 'silent' || received < NONCE_LEN) return;
      if (hold) resolve(s);
      else s.end();
    });
    s.once('close', () => (connected ? resolve(s) : reject(new Error(`junk connection (${kind}) to ${port} failed`))));
  });
  return withTimeout(attempt, 10_000, `junk connection (${kind})`);
}

/** Runs `count` junk connections of `kind` to `port`, OPTS.junkConcurrency at a time. */
async function junkRun(port: number, kind: JunkKind, count: number): Promise<void> {
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < count) {
      started++;
      await junkConnection(port, kind);
    }
  };
  await Promise.all(Array.from({ length: Math.min(OPTS.junkConcurrency, count) }, worker));
}

/** CPU milliseconds `d` spends per junk connection over `count` connections of `kind`. */
async function junkCost(d: Daemon, port: number, kind: JunkKind, count: number): Promise<number> {
  const cpu0 = cpuSeconds(d.pid);
  await junkRun(port, kind, count);
  const ms = ((cpuSeconds(d.pid) - cpu0) / count) * 1000;
  if (d.child.exitCode !== null || d.child.signalCode !== null) throw new Error(`${d.name} died: ${d.stderr.join('')}`);
  return ms;
}

/** The junk phase for `impl`: per kind a fresh daemon, cold then warm; then a fresh daemon holding silent connections for VmRSS. */
async function runJunk(impl: Impl, keyFile: string, targetPort: number): Promise<JunkResult> {
  const costOf = async (kind: JunkKind): Promise<JunkCost> => {
    const port = await freePort();
    const d = await startJunkDaemon(impl, keyFile, targetPort, port);
    try {
      const cold = await junkCost(d, port, kind, OPTS.junkCold);
      await junkRun(port, kind, OPTS.junkCold); // warm-up, not measured
      const warm = await junkCost(d, port, kind, OPTS.junkCount);
      progress(`${impl}: junk ${kind}: ${cold.toFixed(3)} ms/conn cold, ${warm.toFixed(3)} warm`);
      return { cold, warm };
    } finally {
      await stopDaemon(d);
    }
  };
  const cost: Record<JunkKind, JunkCost> = {
    silent: await costOf('silent'),
    random400: await costOf('random400'),
    nonce: await costOf('nonce'),
  };
  const port = await freePort();
  const d = await startJunkDaemon(impl, keyFile, targetPort, port);
  const sockets: Socket[] = [];
  try {
    const rssIdle = vmMiB(d.pid, 'VmRSS');
    let opened = 0;
    const worker = async (): Promise<void> => {
      while (opened < OPTS.junkSilent) {
        opened++;
        sockets.push(await junkConnection(port, 'silent', true));
      }
    };
    await Promise.all(Array.from({ length: Math.min(OPTS.junkConcurrency, OPTS.junkSilent) }, worker));
    const held = sockets.filter((s) => !s.destroyed && !s.readableEnded).length;
    const rssSilent = vmMiB(d.pid, 'VmRSS');
    progress(`${impl}: VmRSS ${rssIdle.toFixed(1)} MiB idle, ${rssSilent.toFixed(1)} MiB holding ${held} silent connections`);
    return { cost, rssIdle, rssSilent, held };
  } finally {
    for (const s of sockets) s.destroy();
    await stopDaemon(d);
  }
}

// ---- one implementation, one round ----------------------------------------------------------

/** Every metric of one implementation in one round (a phase left out by --phases is missing). */
interface ImplResult {
  bulk?: BulkResult;
  rtt?: RttResult;
  connPfs?: ConnResult;
  connFast?: ConnResult;
  connPfsConcurrent?: ConnResult; // CONCURRENT_CLIENTS at once
  connFastConcurrent?: ConnResult;
  cold?: ColdResult;
  junk?: JunkResult;
  rssIdleE: number; // VmRSS MiB of E once listening (idle)
}

/** Runs the selected bulk and connection phases for `impl`: a PFS pair (bulk, PFS connections), then a -f pair (fast connections). */
async function runImpl(impl: Impl, keyFile: string, server: TargetServer, targetPort: number): Promise<ImplResult> {
  const bytes = OPTS.sizeMiB * 1024 * 1024;
  const result: ImplResult = { rssIdleE: NaN };
  const want = (phase: Phase): boolean => OPTS.phases.includes(phase);
  if (want('bulk') || want('conn')) {
    const pair = await startPair(impl, keyFile, targetPort, []);
    try {
      result.rssIdleE = vmMiB(pair.e.pid, 'VmRSS');
      if (want('bulk')) {
        progress(`${impl}: bulk ${OPTS.sizeMiB} MiB`);
        result.bulk = await withTimeout(bulk(pair, server, bytes), 600_000, `${impl} bulk`);
        progress(`${impl}: ${result.bulk.mbps.toFixed(1)} MB/s`);
      }
      if (want('conn')) {
        result.connPfs = await connectionRate(pair, OPTS.connSeconds);
        progress(`${impl}: ${result.connPfs.perSecond.toFixed(0)} PFS connections/s`);
        result.connPfsConcurrent = await connectionRate(pair, OPTS.connSeconds, CONCURRENT_CLIENTS);
        progress(`${impl}: ${result.connPfsConcurrent.perSecond.toFixed(0)} PFS connections/s, ${CONCURRENT_CLIENTS} clients at once`);
      }
    } finally {
      await stopPair(pair);
    }
  }
  if (want('conn')) {
    const pair = await startPair(impl, keyFile, targetPort, ['-f']);
    try {
      result.connFast = await connectionRate(pair, OPTS.connSeconds);
      progress(`${impl}: ${result.connFast.perSecond.toFixed(0)} -f connections/s`);
      result.connFastConcurrent = await connectionRate(pair, OPTS.connSeconds, CONCURRENT_CLIENTS);
      progress(`${impl}: ${result.connFastConcurrent.perSecond.toFixed(0)} -f connections/s, ${CONCURRENT_CLIENTS} clients at once`);
    } finally {
      await stopPair(pair);
    }
  }
  if (want('junk')) result.junk = await runJunk(impl, keyFile, targetPort);
  return result;
}

// ---- report -----------------------------------------------------------------------------

/** One row of the table: its label (with the unit), how to read it from an ImplResult, and its decimals. */
interface Metric {
  label: string;
  get: (r: ImplResult) => number | undefined;
  digits: number;
}

const METRICS: Metric[] = [
  { label: 'bulk throughput (MB/s plaintext)', get: (r) => r.bulk?.mbps, digits: 1 },
  { label: 'bulk CPU E (s)', get: (r) => r.bulk?.cpuE, digits: 2 },
  { label: 'bulk CPU D (s)', get: (r) => r.bulk?.cpuD, digits: 2 },
  { label: 'bulk MB per CPU-second, E', get: (r) => r.bulk && (OPTS.sizeMiB * 1048576) / 1e6 / r.bulk.cpuE, digits: 0 },
  { label: 'bulk MB per CPU-second, D', get: (r) => r.bulk && (OPTS.sizeMiB * 1048576) / 1e6 / r.bulk.cpuD, digits: 0 },
  { label: 'bulk CPU E+D per GB plaintext (s)', get: (r) => r.bulk && ((r.bulk.cpuE + r.bulk.cpuD) / (OPTS.sizeMiB * 1048576)) * 1e9, digits: 2 },
  { label: 'bulk CPU source+sink (this proc, s)', get: (r) => r.bulk?.cpuLoad, digits: 2 },
  { label: 'peak RSS E during bulk (MiB)', get: (r) => r.bulk?.hwmE, digits: 1 },
  { label: 'peak RSS D during bulk (MiB)', get: (r) => r.bulk?.hwmD, digits: 1 },
  { label: 'idle RSS E (MiB)', get: (r) => r.rssIdleE, digits: 1 },
  { label: 'connections/s, PFS', get: (r) => r.connPfs?.perSecond, digits: 0 },
  { label: 'connections/s, -f', get: (r) => r.connFast?.perSecond, digits: 0 },
  { label: 'CPU ms per conn PFS, E+D', get: (r) => r.connPfs && r.connPfs.cpuE + r.connPfs.cpuD, digits: 2 },
  { label: 'CPU ms per conn -f, E+D', get: (r) => r.connFast && r.connFast.cpuE + r.connFast.cpuD, digits: 2 },
  { label: `connections/s, PFS, ${CONCURRENT_CLIENTS} clients`, get: (r) => r.connPfsConcurrent?.perSecond, digits: 0 },
  { label: `connections/s, -f, ${CONCURRENT_CLIENTS} clients`, get: (r) => r.connFastConcurrent?.perSecond, digits: 0 },
  { label: `CPU ms per conn PFS, E+D, ${CONCURRENT_CLIENTS} clients`, get: (r) => r.connPfsConcurrent && r.connPfsConcurrent.cpuE + r.connPfsConcurrent.cpuD, digits: 2 },
  { label: `CPU ms per conn -f, E+D, ${CONCURRENT_CLIENTS} clients`, get: (r) => r.connFastConcurrent && r.connFastConcurrent.cpuE + r.connFastConcurrent.cpuD, digits: 2 },
  { label: 'cold: start-up to listening, D (ms)', get: (r) => r.cold?.startupMs, digits: 0 },
  { label: `cold: first ${COLD_ROUND_TRIPS} RTT p50 (µs)`, get: (r) => r.cold?.p50, digits: 0 },
  { label: `cold: first ${COLD_ROUND_TRIPS} RTT p99 (µs)`, get: (r) => r.cold?.p99, digits: 0 },
  { label: '1-byte RTT p50 (µs)', get: (r) => r.rtt?.p50, digits: 0 },
  { label: '1-byte RTT p99 (µs)', get: (r) => r.rtt?.p99, digits: 0 },
  { label: 'CPU µs per round trip, E+D', get: (r) => r.rtt && r.rtt.cpuE + r.rtt.cpuD, digits: 1 },
  ...JUNK_KINDS.flatMap((kind): Metric[] => [
    { label: `junk ${kind}: D CPU ms/conn, cold`, get: (r) => r.junk?.cost[kind].cold, digits: 3 },
    { label: `junk ${kind}: D CPU ms/conn, warm`, get: (r) => r.junk?.cost[kind].warm, digits: 3 },
  ]),
  { label: 'junk: VmRSS D idle (MiB)', get: (r) => r.junk?.rssIdle, digits: 1 },
  { label: 'junk: VmRSS D holding silent conns (MiB)', get: (r) => r.junk?.rssSilent, digits: 1 },
];

/** Median of the defined, finite values of `xs`; undefined if there are none. */
function median(xs: readonly (number | undefined)[]): number | undefined {
  const s = xs.filter((x): x is number => x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return undefined;
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
}

/** Formats `x` with `digits` decimals, '-' for missing. */
function fmt(x: number | undefined, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

/** Prints the table (median over rounds) of ours, C, ours/C, and the relay where it ran. */
function printTable(results: Record<Impl, ImplResult[]>, backend: string): void {
  const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
    a !== undefined && b !== undefined && b !== 0 ? a / b : undefined;
  const withRelay = results.relay.length > 0;
  const withOld = results.old.length > 0;
  const rows: string[][] = [
    ['metric', 'ours', 'C', 'ours/C', ...(withRelay ? ['Node relay', 'relay/C', 'ours/relay'] : []), ...(withOld ? ['old', 'ours/old'] : [])],
  ];
  for (const m of METRICS) {
    const o = median(results.ours.map(m.get));
    const c = median(results.c.map(m.get));
    const r = median(results.relay.map(m.get));
    const old = median(results.old.map(m.get));
    if (o === undefined && c === undefined && r === undefined && old === undefined) continue; // a phase not run
    const relayCells = withRelay ? [fmt(r, m.digits), fmt(ratio(r, c), 2), fmt(ratio(o, r), 2)] : [];
    const oldCells = withOld ? [fmt(old, m.digits), fmt(ratio(o, old), 2)] : [];
    rows.push([m.label, fmt(o, m.digits), fmt(c, m.digits), fmt(ratio(o, c), 2), ...relayCells, ...oldCells]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  const out = [
    `spiped tunnel benchmark: client -> E(-e) -> D(-d) -> server on 127.0.0.1, both daemons -F -n 0, same key`,
    `crypto backend (ours): ${backend}`,
    ...(OPTS.phases.some((phase) => phase === 'bulk' || phase === 'rtt' || phase === 'conn')
      ? [
          `bulk ${OPTS.sizeMiB} MiB one direction (after 16 MiB warm-up); connections ${OPTS.connSeconds} s each after as long a warm-up; ${OPTS.rttCount} round trips each after ${RTT_WARM_UP}, in turns of ${RTT_BLOCK} between the pairs`,
        ]
      : []),
    ...(OPTS.phases.includes('cold')
      ? [`cold: a fresh PFS pair per implementation moves ${COLD_BYTES / 1048576} MiB and serves ${COLD_CONNECTIONS} connections, then the first ${COLD_ROUND_TRIPS} round trips of each are timed (no warm-up by the bench; in turns of ${COLD_BLOCK} between the pairs)`]
      : []),
    `rounds ${OPTS.rounds} (median)`,
    ...(OPTS.phases.includes('junk')
      ? [
          `junk: a fresh -d -n 0 -o 5 per kind; CPU per connection over the first ${OPTS.junkCold} (cold), then ${OPTS.junkCold} unmeasured, then ${OPTS.junkCount} (warm); ${OPTS.junkConcurrency} in flight; CPU in ${(1000 / CLK_TCK).toFixed(0)} ms ticks (/proc/<pid>/stat: one tick is ${(1000 / CLK_TCK / OPTS.junkCold).toFixed(3)} ms per connection cold, ${(1000 / CLK_TCK / OPTS.junkCount).toFixed(3)} warm); VmRSS holding ${OPTS.junkSilent} silent connections`,
        ]
      : []),
    `cpus ${cpus().length} x ${cpus()[0]?.model ?? '?'}; load average at end ${loadavg().map((x) => x.toFixed(2)).join(' ')}; node ${process.version}`,
    '',
    line(rows[0]!),
    ...rows.slice(1).map(line),
  ];
  process.stdout.write(out.join('\n') + '\n');
}

// ---- main -------------------------------------------------------------------------------

/** Runs the rounds over the selected implementations and prints the report. */
async function main(): Promise<void> {
  const impls: Impl[] = [];
  if (OPTS.only !== 'c') {
    if (!existsSync(OPTS.oursCli)) throw new Error(`${OPTS.oursCli} not found: run npm run build:ts`);
    impls.push('ours');
  }
  if (OPTS.only !== 'ours') {
    if (existsSync(C_SPIPED)) impls.push('c');
    else progress(`${C_SPIPED} not found: measuring ours only`);
  }
  if (OPTS.abCli !== null) {
    if (!existsSync(OPTS.abCli)) throw new Error(`--ab ${OPTS.abCli} not found`);
    impls.push('old');
  }
  if (OPTS.relay && (OPTS.phases.includes('rtt') || OPTS.phases.includes('junk'))) {
    if (existsSync(RELAY_CLI)) impls.push('relay');
    else progress(`${RELAY_CLI} not found (run npm run build:ts): no Node relay`);
  }
  const info = cryptoBackend();
  const backend = `${info.name} (aesni ${info.aesni}, shani ${info.shani}, vaes ${info.vaes})${info.reason ? `: ${info.reason}` : ''}`;
  const dir = mkdtempSync(join(tmpdir(), 'spiped-bench-'));
  const keyFile = join(dir, 'key');
  writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
  const server = new TargetServer();
  const targetPort = await freePort();
  await server.listen(targetPort);
  const results: Record<Impl, ImplResult[]> = { ours: [], c: [], relay: [], old: [] };
  const started = Date.now();
  try {
    for (let round = 0; round < OPTS.rounds; round++) {
      // Alternate the order per round so neither always runs first.
      const order = round % 2 === 0 ? impls : [...impls].reverse();
      const roundResults = new Map<Impl, ImplResult>();
      for (const impl of order) {
        if (impl !== 'relay') roundResults.set(impl, await runImpl(impl, keyFile, server, targetPort));
        else roundResults.set(impl, { rssIdleE: NaN, ...(OPTS.phases.includes('junk') ? { junk: await runJunk(impl, keyFile, targetPort) } : {}) });
      }
      if (OPTS.phases.includes('rtt')) {
        const rtts = await runRoundTrips(order, keyFile, server, targetPort);
        order.forEach((impl, i) => (roundResults.get(impl)!.rtt = rtts[i]));
      }
      if (OPTS.phases.includes('cold')) {
        const spipeds = order.filter((impl) => impl !== 'relay');
        const colds = await withTimeout(runColdRoundTrips(spipeds, keyFile, server, targetPort), 300_000, 'cold phase');
        spipeds.forEach((impl, i) => (roundResults.get(impl)!.cold = colds[i]));
      }
      for (const impl of impls) results[impl].push(roundResults.get(impl)!);
    }
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  progress(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (OPTS.json) {
    process.stdout.write(JSON.stringify({ backend: info, options: OPTS, loadavg: loadavg(), results }, null, 2) + '\n');
  } else {
    printTable(results, backend);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`tunnel bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
