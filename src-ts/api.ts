// Owns the library entry points: connect() (spipe in-process), createServer()
// (spiped -d with the target in-process) and createTunnel() (a whole daemon).
// The CLIs are thin layers over these.

import { createServer as netCreateServer, type Server, type Socket } from 'node:net';
import { parseAddress, resolveAddress, type Endpoint } from './address.js';
import { tuneSocket } from './channel.js';
import { connectToTarget, runHandshake } from './connection.js';
import { MAX_SERVER_KEYS, preparePfsServer } from './handshake.js';
import { Dispatcher } from './dispatcher.js';
import { SpipedError, asSpipedError } from './errors.js';
import { loadEach, loadKey, loadKeys, type KeySource } from './keyfile.js';
import { SecureStream } from './secure-stream.js';
import { inheritedSocket, isSystemdAddress } from './systemd.js';
import { isProxyProtocolVersion, type ProxyProtocolVersion } from './proxy-protocol.js';

/** A running daemon (createTunnel); close() drains it like SIGTERM. */
export type Tunnel = Dispatcher;

/** The defaults of the reference tools. */
export const DEFAULTS = {
  timeout: 5, // -o, seconds
  maxConnections: 100, // -n
  resolveEvery: 60, // -r, seconds
} as const;

/** The longest delay a Node timer takes (2^31-1 ms); longer ones would fire at once. */
export const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** Options shared by every entry point. */
export interface SessionOptions {
  key: KeySource | readonly KeySource[]; // a key file's path, or the key file's bytes (hashed like a file); a server (createServer, a decrypting tunnel) takes several
  fast?: boolean; // -f: no forward secrecy
  requirePfs?: boolean; // -g: refuse peers using -f
  timeout?: number; // -o: seconds for connecting and for the handshake (default 5)
}

/** Options of connect(). */
export interface ConnectOptions extends SessionOptions {
  target: string; // spiped address of the `spiped -d`
  bind?: string; // -b: local address (port optional)
  keepAlive?: boolean; // SO_KEEPALIVE (default true; -j turns it off)
}

/** Options of createTunnel(). */
export interface TunnelOptions extends SessionOptions {
  mode: 'encrypt' | 'decrypt'; // -e or -d
  source: string; // -s; "systemd:" / "systemd:<name>" for a socket passed by systemd (see README "systemd")
  target: string; // -t
  maxConnections?: number; // -n (default 100, 0 = unlimited)
  keepAlive?: boolean; // default true (-j turns it off)
  resolveEvery?: number | null; // -r seconds (default 60); null or 0 = never (-R)
  bind?: string; // -b
  waitForDns?: boolean; // -D: retry failed lookups every second until they succeed
  proxyProtocol?: ProxyProtocolVersion | null; // 'v1' | 'v2': start each connection's plaintext with a PROXY header (see README "PROXY protocol"); default none
  warmUp?: boolean; // once listening, run the process's in-process warm-up (warm-up.ts, once per process) so that the first connections run on compiled code; default false (the CLI daemons turn it on unless SPIPED_NATIVE_WARM_UP=0)
}

/** Checks the option combinations every entry point shares; throws TypeError. */
function checkSessionOptions(options: SessionOptions): void {
  if (options.fast === true && options.requirePfs === true) {
    throw new TypeError('fast (-f) and requirePfs (-g) cannot be combined');
  }
  const timeout = options.timeout ?? DEFAULTS.timeout;
  if (!(timeout > 0) || timeout > MAX_TIMER_SECONDS) {
    throw new TypeError(`timeout must be a number of seconds in (0, ${MAX_TIMER_SECONDS}]`);
  }
}

/** The key sources of `key` as a list; throws TypeError for none, too many, or several where `several` is false (a client's one key). */
function keySources(key: SessionOptions['key'], several: boolean): readonly KeySource[] {
  const sources: readonly KeySource[] = Array.isArray(key) ? key : [key as KeySource];
  if (sources.length === 0) throw new TypeError('key: at least one key is needed');
  if (!several && sources.length > 1) throw new TypeError('key: only a decrypting server takes several keys; a client (connect, encrypt mode) takes one');
  if (sources.length > MAX_SERVER_KEYS) throw new TypeError(`key: at most ${MAX_SERVER_KEYS} keys`);
  return sources;
}

/** Fresh keys for a reload: key files read again, in order; a key from standard input or from bytes is kept (copied from `current`, which is in the same order); throws EKEYFILE, having wiped what it read. */
function reloadKeys(sources: readonly KeySource[], current: readonly Buffer[]): Promise<Buffer[]> {
  return loadEach(sources, async (source, i) => (typeof source === 'string' && source !== '-' ? loadKey(source) : Buffer.from(current[i]!)));
}

/** Resolves a -b address to one endpoint (port optional). */
async function resolveBind(bind: string | undefined): Promise<Endpoint | null> {
  if (bind === undefined) return null;
  const [first] = await resolveAddress(parseAddress(bind, true));
  return first ?? null;
}

/** Resolves `text`, retrying every second while `waitForDns` (for -D). */
async function resolveTargetAddress(text: string, waitForDns: boolean): Promise<Endpoint[]> {
  const address = parseAddress(text);
  for (;;) {
    try {
      return await resolveAddress(address);
    } catch (err) {
      if (!waitForDns || !(err instanceof SpipedError) || err.code !== 'ERESOLVE') throw err;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

/** spipe in-process: connects and handshakes as client; resolves to a plaintext Duplex, rejects with a SpipedError. */
export async function connect(options: ConnectOptions): Promise<SecureStream> {
  checkSessionOptions(options);
  const [source] = keySources(options.key, false);
  const timeoutMs = (options.timeout ?? DEFAULTS.timeout) * 1000;
  const endpoints = await resolveAddress(parseAddress(options.target)); // resolved before the key is read, as the reference does
  const key = await loadKey(source!);
  let socket: Socket | null = null;
  try {
    socket = await connectToTarget(endpoints, { timeoutMs, bind: await resolveBind(options.bind) });
    const session = await runHandshake(socket, 'client', {
      key,
      fast: options.fast ?? false,
      requirePfs: options.requirePfs ?? false,
      timeoutMs,
    });
    tuneSocket(socket, options.keepAlive ?? true);
    return new SecureStream(socket, session);
  } catch (err) {
    socket?.destroy();
    throw err;
  } finally {
    key.fill(0);
  }
}

/** spiped -d with the target in-process: a net.Server whose authenticated peers reach `onConnection` as plaintext Duplexes. */
export function createServer(options: SessionOptions, onConnection: (plain: SecureStream) => void): Server {
  checkSessionOptions(options);
  const timeoutMs = (options.timeout ?? DEFAULTS.timeout) * 1000;
  const keyReady = loadKeys(keySources(options.key, true));
  const releaseDhPool = options.fast ?? false ? () => {} : preparePfsServer();
  const server = netCreateServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket: Socket) => {
    socket.on('error', () => {}); // failures surface through the handshake or the SecureStream
    keyReady
      .then((key) =>
        runHandshake(socket, 'server', {
          key,
          fast: options.fast ?? false,
          requirePfs: options.requirePfs ?? false,
          timeoutMs,
        }),
      )
      .then(
        (session) => {
          tuneSocket(socket, true);
          onConnection(new SecureStream(socket, session));
        },
        (err: unknown) => {
          socket.destroy();
          server.emit('connectionError', asSpipedError(err, 'EHANDSHAKE', 'Handshake failed'));
        },
      );
  });
  keyReady.catch((err: unknown) => server.emit('error', err));
  server.on('close', () => {
    releaseDhPool();
    void keyReady.then((keys) => keys.forEach((key) => key.fill(0)), () => {});
  });
  return server;
}

/** A whole spiped daemon in-process; resolves once listening. */
export async function createTunnel(options: TunnelOptions): Promise<Tunnel> {
  checkSessionOptions(options);
  if (options.mode !== 'encrypt' && options.mode !== 'decrypt') {
    throw new TypeError(`mode must be 'encrypt' or 'decrypt'`);
  }
  const maxConnections = options.maxConnections ?? DEFAULTS.maxConnections;
  if (!Number.isInteger(maxConnections) || maxConnections < 0) {
    throw new TypeError('maxConnections must be a non-negative integer');
  }
  const resolveEvery = options.resolveEvery === undefined ? DEFAULTS.resolveEvery : options.resolveEvery;
  if (resolveEvery !== null && !(resolveEvery >= 0 && resolveEvery <= MAX_TIMER_SECONDS)) {
    throw new TypeError(`resolveEvery must be null or a number of seconds in [0, ${MAX_TIMER_SECONDS}]`);
  }
  const proxyProtocol = options.proxyProtocol ?? null;
  if (proxyProtocol !== null && !isProxyProtocolVersion(proxyProtocol)) throw new TypeError(`proxyProtocol must be 'v1', 'v2' or null`);
  const sources = keySources(options.key, options.mode === 'decrypt');
  const waitForDns = options.waitForDns ?? false;
  const target = parseAddress(options.target);
  const [source] = isSystemdAddress(options.source) ? [inheritedSocket(options.source)] : await resolveTargetAddress(options.source, waitForDns);
  const targets = await resolveTargetAddress(options.target, waitForDns);
  const key = await loadKeys(sources); // after resolving, as the reference does (its messages come in that order)
  try {
    return await Dispatcher.listen({
      mode: options.mode,
      keys: key,
      reloadKeys: (current) => reloadKeys(sources, current),
      fast: options.fast ?? false,
      requirePfs: options.requirePfs ?? false,
      timeoutMs: (options.timeout ?? DEFAULTS.timeout) * 1000,
      keepAlive: options.keepAlive ?? true,
      bind: await resolveBind(options.bind),
      source: source!,
      target,
      targets,
      resolveEverySeconds: resolveEvery === null || resolveEvery === 0 ? null : resolveEvery,
      maxConnections,
      proxyProtocol,
      warmUp: options.warmUp ?? false,
    });
  } catch (err) {
    for (const k of key) k.fill(0); // every failure after the keys were loaded wipes them (a running tunnel wipes them once drained)
    throw asSpipedError(err, 'EADDRESS', 'Could not start the tunnel');
  }
}
