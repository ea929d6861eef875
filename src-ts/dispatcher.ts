// Owns the listening side of the daemon: accepting connections on the source
// address (a Unix socket file is created under a temporary name and linked into
// place, so that closing removes it only while the path is still ours), the -n
// connection limit (queueing what arrives at the limit, as the kernel backlog does
// for the reference), periodic re-resolution of the target (-r/-R, one lookup at a
// time), reload() (SIGHUP: the keys re-read, the target re-resolved, live
// connections untouched), and the SIGTERM-style drain performed by close().

import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { linkSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { formatAddress, formatEndpoint, resolveAddress, type Endpoint, type SocketAddress } from './address.js';
import { acceptChannels, type Channel } from './channel.js';
import { runConnection, type ConnectionOptions, type ConnectionTally } from './connection.js';
import { outcomeOf, peerOf, trafficByDirection, type ConnectionRecord } from './connection-log.js';
import { TunnelCounters, type TunnelStats } from './stats.js';
import { preparePfsServer } from './handshake.js';
import { warmUpOnce } from './warm-up.js';
import { KeyRing } from './key-ring.js';
import { SYSTEMD_PREFIX, type InheritedSocket } from './systemd.js';
import { SpipedError, asSpipedError } from './errors.js';

/** Connections waiting beyond -n are held up to this many (like a listen backlog); more are closed. */
export const MAX_QUEUED_CONNECTIONS = 128;

/** The longest Unix socket path the kernel takes (sun_path is 108 bytes with its NUL). */
const MAX_UNIX_PATH = 107;

/** The device and inode of a file, which identify the socket this process bound. */
interface FileIdentity {
  dev: number;
  ino: number;
}

/** The identity of the socket at `path` itself (a symlink is not followed), or null if there is no socket there. */
function identityOf(path: string): FileIdentity | null {
  try {
    const stats = lstatSync(path);
    return stats.isSocket() ? { dev: stats.dev, ino: stats.ino } : null;
  } catch {
    return null;
  }
}

/** Everything the dispatcher needs, besides the per-connection options. */
export interface DispatcherOptions extends Omit<ConnectionOptions, 'targets' | 'keys'> {
  keys: readonly Buffer[]; // K for each -k (owned from now on: wiped once replaced and unused, and when drained)
  reloadKeys?: (current: readonly Buffer[]) => Promise<Buffer[]>; // how reload() gets fresh keys (fresh buffers; default: keeps the current ones)
  source: Endpoint | InheritedSocket; // where to listen (resolved once at start), or a listening socket passed by systemd
  target: SocketAddress; // where to connect, re-resolved every resolveEverySeconds
  targets: readonly Endpoint[]; // the target's addresses, resolved at start
  resolveEverySeconds: number | null; // -r; null for -R (never)
  maxConnections: number; // -n; 0 = unlimited
  resolve?: (address: SocketAddress) => Promise<Endpoint[]>; // how to re-resolve the target (default: DNS via resolveAddress)
  warmUp?: boolean; // run the process's warm-up (warmUpOnce) once listening (default false)
}

/** What a reload did: whether the keys were replaced and the target re-resolved (a failure keeps the old ones and is emitted as a 'warning'). */
export interface ReloadOutcome {
  keys: boolean;
  target: boolean;
}

/** Events a Dispatcher emits. */
export interface DispatcherEvents {
  warning: [message: string]; // something the daemon would print (limit reached, failed re-resolution)
  connectionError: [error: SpipedError]; // one connection failed; the daemon goes on
  connection: [record: ConnectionRecord]; // a served connection has ended, whichever way (after any connectionError)
}

/** A listening spiped daemon. */
export class Dispatcher extends EventEmitter<DispatcherEvents> {
  private readonly options: DispatcherOptions;
  /** What every connection is run with (built once, not per connection). */
  private readonly connectionOptions: ConnectionOptions;
  private readonly server: Server;
  private readonly queued: Channel[] = [];
  private readonly keyRing: KeyRing;
  private readonly counters: TunnelCounters;
  /** The tallies of the connections being served (read only by stats()). */
  private readonly live = new Set<ConnectionTally>();
  private targets: readonly Endpoint[];
  /** The last target lookup (each one starts only once the previous one has finished). */
  private lookup: Promise<boolean> = Promise.resolve(true);
  private active = 0;
  private closing = false;
  private resolveTimer: NodeJS.Timeout | null = null;
  /** The temporary name the Unix socket was bound under, until linked into place. */
  private bindingAs: string | null = null;
  /** The Unix socket file this process created at the source path (null for TCP, or once removed). */
  private ownSocketFile: FileIdentity | null = null;
  private readonly drained: Promise<void>;
  private onDrained: () => void = () => {};
  /** Gives back this daemon's lease on the DH pool (PFS only). */
  private releaseDhPool: () => void = () => {};

  private constructor(options: DispatcherOptions) {
    super();
    this.options = options;
    this.targets = options.targets;
    this.keyRing = new KeyRing(options.keys);
    this.counters = new TunnelCounters(options.mode);
    this.connectionOptions = { ...options, keys: this.keyRing, targets: () => this.targets };
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
    this.drained = new Promise<void>((resolve) => (this.onDrained = resolve)).then(() => {
      this.keyRing.close();
      this.releaseDhPool();
    });
  }

  /** Starts listening on `options.source`; resolves once bound, rejects if the source cannot be bound. */
  static async listen(options: DispatcherOptions): Promise<Dispatcher> {
    const dispatcher = new Dispatcher(options);
    await dispatcher.bind();
    if (!options.fast) dispatcher.releaseDhPool = preparePfsServer(); // once bound: its worker starts while the daemon already listens
    // Alongside the first connections, not before listening: none is refused or kept waiting for it.
    if (options.warmUp === true) void warmUpOnce();
    dispatcher.scheduleResolution();
    return dispatcher;
  }

  /** The number of connections being served (not counting queued ones). */
  get connectionCount(): number {
    return this.active;
  }

  /** The address actually bound (useful with port 0). */
  address(): Endpoint {
    const bound = this.server.address();
    const source = this.options.source;
    if (typeof bound === 'string') return { kind: 'unix', path: bound };
    if (bound === null) return source.kind === 'fd' ? { kind: 'unix', path: `${SYSTEMD_PREFIX}${source.name}` } : source;
    return { kind: 'inet', address: bound.address, family: bound.family === 'IPv6' ? 6 : 4, port: bound.port };
  }

  /** The tunnel's counters now (see TunnelStats). */
  stats(): TunnelStats {
    return this.counters.snapshot(this.live, this.active, this.queued.length);
  }

  /** The target addresses currently in use. */
  currentTargets(): readonly Endpoint[] {
    return this.targets;
  }

  /**
   * SIGHUP: re-reads the keys (all or nothing: if any cannot be read, all the old ones stay and a
   * 'warning' says why) and re-resolves the target (a failed lookup keeps the old addresses);
   * live connections are untouched. Never rejects.
   */
  async reload(): Promise<ReloadOutcome> {
    let keys = false;
    if (this.options.reloadKeys !== undefined && !this.closing) {
      try {
        this.keyRing.replace(await this.options.reloadKeys(this.keyRing.keys));
        keys = true;
      } catch (err) {
        this.emit('warning', `Reload: keeping all the old keys: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    const target = await this.resolveTarget();
    return { keys, target };
  }

  /** Stops accepting, drops queued connections, removes the Unix socket file if the path is still ours, and resolves once the last live connection has ended. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      if (this.resolveTimer !== null) clearTimeout(this.resolveTimer);
      this.server.close();
      this.removeOwnSocketFile();
      for (const socket of this.queued.splice(0)) socket.destroy();
      if (this.active === 0) this.onDrained();
    }
    return this.drained;
  }

  private bind(): Promise<void> {
    const source = this.options.source;
    return new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(asSpipedError(err, 'EADDRESS', `Error binding socket ${source.kind === 'fd' ? `${SYSTEMD_PREFIX}${source.name}` : formatEndpoint(source)}`));
      this.server.once('error', onError);
      const ready = (): void => {
        this.server.off('error', onError);
        acceptChannels(
          this.server,
          (channel) => this.accept(channel),
          (err) => this.emit('warning', `Error accepting connections: ${err.message}`),
        );
        resolve();
      };
      if (source.kind === 'fd') this.server.listen({ fd: source.fd }, ready);
      else if (source.kind === 'unix') this.server.listen({ path: this.unixBindPath(source.path) }, ready);
      else this.server.listen({ host: source.address, port: source.port, ipv6Only: source.family === 6 }, ready);
    }).then(() => {
      if (source.kind === 'unix') this.linkUnixSocket(source.path);
    });
  }

  /** Where to bind a Unix source: a fresh temporary name beside `path` (linked into place after), or `path` itself when that name would not fit. */
  private unixBindPath(path: string): string {
    const temporary = join(dirname(path), `.${basename(path).slice(0, 16)}.${randomBytes(6).toString('hex')}`);
    this.bindingAs = Buffer.byteLength(temporary) <= MAX_UNIX_PATH ? temporary : null;
    return this.bindingAs ?? path;
  }

  /** Links the socket bound under its temporary name to `path` (failing, like bind(2), if `path` exists) and records its identity; Node then unlinks only the temporary name at close. */
  private linkUnixSocket(path: string): void {
    const temporary = this.bindingAs;
    this.bindingAs = null;
    if (temporary !== null) {
      try {
        linkSync(temporary, path);
      } catch (err) {
        this.server.close(); // Node unlinks the temporary name
        const errno = (err as NodeJS.ErrnoException).code;
        const code = errno === 'EEXIST' ? 'EADDRINUSE' : errno; // what bind(2) says of a taken path
        const cause = Object.assign(new Error(`bind ${path}: ${code}`), { code });
        throw new SpipedError('EADDRESS', `Error binding socket ${path}: ${code}`, { cause });
      }
      unlinkSync(temporary); // the socket lives on under `path`; Node's unlink at close then finds nothing
    }
    this.ownSocketFile = identityOf(path);
  }

  /** Removes the source socket file if the path still is the socket this process created (never another's, nor a symlink to ours). Someone who can write the directory could still swap the path between the check and the unlink: Node has no unlinkat(2) on a held directory. */
  private removeOwnSocketFile(): void {
    const own = this.ownSocketFile;
    const source = this.options.source;
    this.ownSocketFile = null;
    if (own === null || source.kind !== 'unix') return;
    const now = identityOf(source.path);
    if (now === null || now.dev !== own.dev || now.ino !== own.ino) return;
    try {
      unlinkSync(source.path);
    } catch {
      // no longer allowed (after -u) or already gone: leave it, as the reference always does
    }
  }

  /** Re-resolves the target every -r seconds, each lookup armed only once the previous one has finished. */
  private scheduleResolution(): void {
    const every = this.options.resolveEverySeconds;
    if (every === null || every <= 0 || this.closing) return;
    this.resolveTimer = setTimeout(() => {
      void this.resolveTarget().then(() => this.scheduleResolution());
    }, every * 1000);
    this.resolveTimer.unref();
  }

  /** Looks the target up again once any lookup under way has finished; resolves true when the addresses were replaced, false (with a warning) when the old ones were kept. */
  private resolveTarget(): Promise<boolean> {
    this.lookup = this.lookup.then(async () => {
      try {
        this.targets = await (this.options.resolve ?? resolveAddress)(this.options.target);
        return true;
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        this.emit('warning', `Re-resolving ${formatAddress(this.options.target)} failed, keeping the old addresses: ${why}`);
        return false;
      }
    });
    return this.lookup;
  }

  private accept(socket: Channel): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const limit = this.options.maxConnections;
    if (limit > 0 && this.active >= limit) {
      if (this.queued.length < MAX_QUEUED_CONNECTIONS) this.queued.push(socket);
      else socket.destroy();
      return;
    }
    this.serve(socket);
  }

  private serve(socket: Channel): void {
    this.active += 1;
    const limit = this.options.maxConnections;
    if (limit > 0 && this.active === limit) this.emit('warning', `Maximum number of connections (${limit}) reached`);
    // The peer's address costs a system call: read only when someone logs connections.
    const peer = this.listenerCount('connection') > 0 ? peerOf(socket.ends()) : '';
    const startedAt = performance.now();
    const tally: ConnectionTally = { keyIndex: null, sealed: 0, opened: 0 };
    this.live.add(tally);
    runConnection(socket, this.connectionOptions, tally)
      .then(
        () => null,
        (err: unknown) => {
          const error = asSpipedError(err, 'ECLOSED', 'Connection failed');
          this.emit('connectionError', error);
          return error;
        },
      )
      .then((error) => {
        const record = this.recordOf(peer, startedAt, tally, error);
        this.live.delete(tally);
        this.counters.add(record);
        try {
          this.emit('connection', record);
        } finally {
          this.release();
        }
      });
  }

  /** The record of a connection that has ended. */
  private recordOf(peer: string, startedAt: number, tally: ConnectionTally, error: SpipedError | null): ConnectionRecord {
    return {
      peer,
      keyIndex: tally.keyIndex,
      durationMs: performance.now() - startedAt,
      ...trafficByDirection(this.options.mode, tally),
      outcome: outcomeOf(error),
      reason: error?.code === 'EHANDSHAKE' ? (error.reason ?? null) : null,
      error,
    };
  }

  private release(): void {
    this.active -= 1;
    while (!this.closing && this.queued.length > 0 && (this.options.maxConnections === 0 || this.active < this.options.maxConnections)) {
      const next = this.queued.shift()!;
      if (!next.destroyed) this.serve(next);
    }
    if (this.closing && this.active === 0) this.onDrained();
  }
}
