// Owns the daemon's connected sockets, one level below net.Socket. A Channel is a
// byte stream with one callback per event instead of streams and emitters:
// - HandleChannel drives a libuv TCP or Unix stream handle directly (the handles
//   net.Socket itself wraps, from Node's tcp_wrap, pipe_wrap and stream_wrap
//   bindings): accept, connect, read into one shared buffer, write, shutdown,
//   close, and nothing else. net.Socket's stream and event machinery costs more per
//   connection than the whole C daemon does (bench: a Node relay on net.Socket
//   takes 1.8x the C pair's CPU per connection, the same relay on handles 1.2x).
// - SocketChannel runs the same interface over a net.Socket: for library callers
//   that hand us sockets, and wherever the handles are not used: a platform other
//   than Linux (not tested there), a Node without them, SPIPED_NATIVE_RAW_SOCKETS=0,
//   or pending deprecations turned on (reaching them would print a warning).
// Semantics are net.Socket's with allowHalfOpen: EOF on reading leaves writing open,
// end() shuts writing down once queued writes are out, and a channel whose both
// directions have ended closes itself; destroy() closes at once.

import { Socket, connect as netConnect, type Server } from 'node:net';
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import type { Endpoint } from './address.js';
import { systemError } from './errors.js';
import { readChunks, sharedReadBuffer } from './socket-reads.js';

/** The addresses of a connection's two ends (undefined where there are none: a Unix socket, a closed one). */
export interface SocketEnds {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
  remoteFamily?: string | undefined;
  localAddress?: string | undefined;
  localPort?: number | undefined;
}

/** A connected byte stream (see the module comment); the callbacks are the owner's to set, and default to doing nothing. */
export interface Channel {
  /** Each chunk read, valid only during the call (it may be a view of a buffer shared by every channel). */
  onData: (chunk: Buffer) => void;
  /** The peer's EOF (reading has stopped; writing may go on). */
  onEnd: () => void;
  /** The writes queued when write() returned false have all gone out. */
  onDrain: () => void;
  /** Once, when the channel has closed: `error` is what broke it, null for a clean or deliberate close. */
  onClose: (error: Error | null) => void;
  /** True from destroy() (or a failure) on. */
  readonly destroyed: boolean;
  /** True once the close has completed (onClose is being or has been called). */
  readonly closed: boolean;
  /** True once the peer's EOF has been read. */
  readonly readEnded: boolean;
  /** Starts (or goes on) reading. */
  resume(): void;
  /** Stops reading until resume(). */
  pause(): void;
  /** Writes `data`; `onWritten` runs once the channel no longer needs its bytes (at once when they went straight to the kernel). False when the caller should wait for onDrain. */
  write(data: Buffer, onWritten: (() => void) | null): boolean;
  /** Shuts down writing once everything queued is out (shutdown(SHUT_WR)). */
  end(): void;
  /** Closes now, dropping anything queued; `error` is passed to onClose. */
  destroy(error?: Error): void;
  /** Sets TCP_NODELAY, and SO_KEEPALIVE when `keepAlive` (both no-ops on Unix sockets). */
  tune(keepAlive: boolean): void;
  /** The addresses of both ends. */
  ends(): SocketEnds;
}

/** What a channel's callbacks do until their owner sets them: nothing. */
function noop(): void {}

// ---- Node's stream handles ---------------------------------------------------------------

/** Where a handle's getpeername()/getsockname() put an address. */
interface AddressOut {
  address?: string;
  family?: string;
  port?: number;
}

/** The libuv stream handle methods used here (common to TCP and Pipe). */
interface StreamHandle {
  onread: () => void;
  readStart(): number;
  readStop(): number;
  useUserBuffer(buffer: Uint8Array): void;
  writeBuffer(req: WriteRequest, data: Uint8Array): number;
  shutdown(req: ShutdownRequest): number;
  close(callback: () => void): void;
  setNoDelay?(enable: boolean): number;
  setKeepAlive?(enable: boolean, delaySeconds: number): number;
  getpeername?(out: AddressOut): number;
  getsockname?(out: AddressOut): number;
}

/** A TCP handle, as created for connecting. */
interface TcpHandle extends StreamHandle {
  connect(req: ConnectRequest, address: string, port: number): number;
  connect6(req: ConnectRequest, address: string, port: number): number;
  bind(address: string, port: number): number;
  bind6(address: string, port: number, flags: number): number;
}

/** A Unix socket handle, as created for connecting. */
interface PipeHandle extends StreamHandle {
  connect(req: ConnectRequest, path: string): number;
}

/** A write request; the extra fields are ours, kept for its completion. */
interface WriteRequest {
  oncomplete: (this: WriteRequest, status: number) => void;
  channel: HandleChannel | null;
  buffer: Uint8Array | null; // keeps the bytes alive while libuv holds them
  length: number;
  onWritten: (() => void) | null;
}

/** A shutdown request. */
interface ShutdownRequest {
  handle: StreamHandle;
  oncomplete: (this: ShutdownRequest, status: number) => void;
  channel: HandleChannel | null;
}

/** A connect request. */
interface ConnectRequest {
  oncomplete: (status: number) => void;
  address: string;
  port?: number;
}

/** What this module needs from Node's bindings. */
interface StreamBindings {
  newTcp: () => TcpHandle;
  newPipe: () => PipeHandle;
  newTcpConnect: () => ConnectRequest;
  newPipeConnect: () => ConnectRequest;
  newWrite: () => WriteRequest;
  newShutdown: () => ShutdownRequest;
  state: Int32Array; // streamBaseState: what the last read or write reported
  readBytesOrError: number;
  lastWriteWasAsync: number;
  eof: number; // UV_EOF
}

/** True when every name in `names` is a function on `object` (a binding class's prototype). */
function hasFunctions(object: unknown, names: readonly string[]): boolean {
  return typeof object === 'object' && object !== null && names.every((name) => typeof (object as Record<string, unknown>)[name] === 'function');
}

/** Node's stream handle bindings, or null when they are unavailable or not wanted (see the module comment). */
function loadBindings(): StreamBindings | null {
  if (process.env['SPIPED_NATIVE_RAW_SOCKETS'] === '0') return null;
  // Only measured and tested on Linux; elsewhere (macOS, Windows named pipes) the daemon runs on net.Socket.
  if (process.platform !== 'linux') return null;
  // Pending deprecations (a flag or NODE_PENDING_DEPRECATION=1) would make process.binding warn, or throw under --throw-deprecation.
  const flags = `${process.execArgv.join(' ')} ${process.env['NODE_OPTIONS'] ?? ''}`;
  if (flags.includes('--pending-deprecation') || process.env['NODE_PENDING_DEPRECATION'] === '1') return null;
  const binding = (process as unknown as { binding?: (name: string) => Record<string, unknown> }).binding;
  if (typeof binding !== 'function') return null;
  try {
    const tcp = binding('tcp_wrap') as { TCP?: unknown; TCPConnectWrap?: unknown; constants?: { SOCKET?: unknown } };
    const pipe = binding('pipe_wrap') as { Pipe?: unknown; PipeConnectWrap?: unknown; constants?: { SOCKET?: unknown } };
    const stream = binding('stream_wrap') as Record<string, unknown>;
    const uv = binding('uv') as { UV_EOF?: unknown };
    const handleMethods = ['readStart', 'readStop', 'useUserBuffer', 'writeBuffer', 'shutdown', 'close'];
    const { TCP, TCPConnectWrap } = tcp;
    const { Pipe, PipeConnectWrap } = pipe;
    const { WriteWrap, ShutdownWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = stream;
    if (
      typeof TCP !== 'function' ||
      typeof Pipe !== 'function' ||
      typeof TCPConnectWrap !== 'function' ||
      typeof PipeConnectWrap !== 'function' ||
      typeof WriteWrap !== 'function' ||
      typeof ShutdownWrap !== 'function' ||
      !hasFunctions(TCP.prototype, [...handleMethods, 'connect', 'connect6', 'bind', 'bind6', 'setNoDelay', 'setKeepAlive', 'getpeername', 'getsockname']) ||
      !hasFunctions(Pipe.prototype, [...handleMethods, 'connect']) ||
      !(streamBaseState instanceof Int32Array) ||
      typeof kReadBytesOrError !== 'number' ||
      typeof kLastWriteWasAsync !== 'number' ||
      typeof tcp.constants?.SOCKET !== 'number' ||
      typeof pipe.constants?.SOCKET !== 'number' ||
      typeof uv.UV_EOF !== 'number'
    ) {
      return null;
    }
    const tcpSocket = tcp.constants.SOCKET;
    const pipeSocket = pipe.constants.SOCKET;
    type Construct<T> = new (type?: number) => T;
    return {
      newTcp: () => new (TCP as Construct<TcpHandle>)(tcpSocket),
      newPipe: () => new (Pipe as Construct<PipeHandle>)(pipeSocket),
      newTcpConnect: () => new (TCPConnectWrap as Construct<ConnectRequest>)(),
      newPipeConnect: () => new (PipeConnectWrap as Construct<ConnectRequest>)(),
      newWrite: () => {
        const req = new (WriteWrap as Construct<WriteRequest>)();
        req.oncomplete = onWriteComplete;
        req.channel = null;
        req.buffer = null;
        req.length = 0;
        req.onWritten = null;
        return req;
      },
      newShutdown: () => new (ShutdownWrap as Construct<ShutdownRequest>)(),
      state: streamBaseState,
      readBytesOrError: kReadBytesOrError,
      lastWriteWasAsync: kLastWriteWasAsync,
      eof: uv.UV_EOF,
    };
  } catch {
    return null;
  }
}

let bindings: StreamBindings | null | undefined;

/** The stream handle bindings, looked up once per process (null: channels run over net.Socket). */
function streamBindings(): StreamBindings | null {
  if (bindings === undefined) bindings = loadBindings();
  return bindings;
}

/** How this process's daemon sockets run: on libuv handles, or on net.Socket. */
export function channelKind(): 'handles' | 'net.Socket' {
  return streamBindings() === null ? 'net.Socket' : 'handles';
}

/** The error a failed libuv call (negative errno `status`) stands for, named as Node names it. */
function uvError(status: number, syscall: string, detail?: string): Error {
  let code: string;
  try {
    code = getSystemErrorName(status);
  } catch {
    code = `E${-status}`;
  }
  return systemError(code, status, syscall, detail);
}

/** Writes a finished write request back to its channel (one function for every request: no closure per write). */
function onWriteComplete(this: WriteRequest, status: number): void {
  this.channel?.writeDone(this, status);
}

/** Reports a finished shutdown request to its channel. */
function onShutdownComplete(this: ShutdownRequest, status: number): void {
  this.channel?.shutdownDone(status);
}

/** A write request no write holds (see HandleChannel.write). */
let spareWrite: WriteRequest | null = null;

/** Writes queued in libuv beyond this many bytes make write() ask the caller to wait (net.Socket's default high-water mark). */
const HIGH_WATER = 16 * 1024;

/** A Channel on a libuv stream handle (see the module comment). */
class HandleChannel implements Channel {
  onData: (chunk: Buffer) => void = noop;
  onEnd: () => void = noop;
  onDrain: () => void = noop;
  onClose: (error: Error | null) => void = noop;
  private readonly handle: StreamHandle;
  private readonly api: StreamBindings;
  private reading = false;
  private queuedBytes = 0; // bytes of writes libuv still holds
  private waitingForDrain = false;
  private ending = false;
  private shutDown = false;
  private ended = false;
  private isClosed = false; // destroy() was called
  private closeDone = false;
  private failure: Error | null = null;

  /** Takes over `handle` (connected, or being connected by the caller). */
  constructor(handle: StreamHandle, api: StreamBindings) {
    this.handle = handle;
    this.api = api;
    handle.useUserBuffer(sharedReadBuffer());
    handle.onread = this.onRead;
  }

  get destroyed(): boolean {
    return this.isClosed;
  }

  get closed(): boolean {
    return this.closeDone;
  }

  get readEnded(): boolean {
    return this.ended;
  }

  resume(): void {
    if (this.reading || this.isClosed || this.ended) return;
    const status = this.handle.readStart();
    if (status < 0) this.destroy(uvError(status, 'read'));
    else this.reading = true;
  }

  pause(): void {
    if (!this.reading || this.isClosed) return;
    this.reading = false;
    this.handle.readStop();
  }

  write(data: Buffer, onWritten: (() => void) | null): boolean {
    if (this.isClosed || this.ending) {
      onWritten?.();
      return false;
    }
    // A write that goes straight to the kernel leaves its request object untouched, so one spare serves them all.
    const req = spareWrite ?? this.api.newWrite();
    spareWrite = null;
    const status = this.handle.writeBuffer(req, data);
    if (status < 0) {
      spareWrite = req;
      onWritten?.();
      this.destroy(uvError(status, 'write'));
      return false;
    }
    if (this.api.state[this.api.lastWriteWasAsync] === 0) {
      spareWrite = req;
      onWritten?.(); // all of it is in the kernel already
    } else {
      req.channel = this;
      req.buffer = data;
      req.length = data.length;
      req.onWritten = onWritten;
      this.queuedBytes += data.length;
    }
    if (this.queuedBytes < HIGH_WATER) return true;
    this.waitingForDrain = true;
    return false;
  }

  /** A queued write has finished (or failed, or was cancelled by close). */
  writeDone(req: WriteRequest, status: number): void {
    this.queuedBytes -= req.length;
    const onWritten = req.onWritten;
    req.channel = null;
    req.buffer = null;
    req.onWritten = null;
    if (status < 0) this.destroy(uvError(status, 'write'));
    onWritten?.();
    if (this.waitingForDrain && this.queuedBytes === 0 && !this.isClosed) {
      this.waitingForDrain = false;
      this.onDrain();
    }
  }

  end(): void {
    if (this.isClosed || this.ending) return;
    this.ending = true;
    const req = this.api.newShutdown();
    req.handle = this.handle;
    req.channel = this;
    req.oncomplete = onShutdownComplete;
    const status = this.handle.shutdown(req);
    if (status < 0) this.shutdownDone(status);
  }

  /** The shutdown has gone through (after every queued write); ENOTCONN (the peer reset meanwhile) counts as done, as net.Socket has it. */
  shutdownDone(status: number): void {
    if (this.isClosed) return;
    if (status < 0 && status !== -osConstants.errno.ENOTCONN) {
      this.destroy(uvError(status, 'shutdown'));
      return;
    }
    this.shutDown = true;
    if (this.ended) this.destroy();
  }

  destroy(error?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.reading = false;
    this.failure = error ?? null;
    this.handle.close(() => {
      this.closeDone = true;
      this.onClose(this.failure);
    });
  }

  tune(keepAlive: boolean): void {
    if (this.isClosed) return;
    this.handle.setNoDelay?.(true);
    if (keepAlive) this.handle.setKeepAlive?.(true, 0);
  }

  ends(): SocketEnds {
    const peer: AddressOut = {};
    const local: AddressOut = {};
    if (!this.isClosed) {
      this.handle.getpeername?.(peer);
      this.handle.getsockname?.(local);
    }
    return { remoteAddress: peer.address, remotePort: peer.port, remoteFamily: peer.family, localAddress: local.address, localPort: local.port };
  }

  /** libuv's read callback: the bytes are at the start of the shared buffer. */
  private readonly onRead = (): void => {
    const count = this.api.state[this.api.readBytesOrError]!;
    if (count > 0) {
      if (!this.isClosed) this.onData(sharedReadBuffer().subarray(0, count));
      return;
    }
    if (count === 0 || this.isClosed) return;
    if (count !== this.api.eof) {
      this.destroy(uvError(count, 'read'));
      return;
    }
    this.ended = true;
    this.pause();
    this.onEnd();
    if (this.shutDown) this.destroy();
  };
}

// ---- net.Socket ---------------------------------------------------------------------------

/** Sets TCP_NODELAY, and SO_KEEPALIVE when `keepAlive`, on a net.Socket (both no-ops on Unix sockets). */
export function tuneSocket(socket: Socket, keepAlive: boolean): void {
  socket.setNoDelay(true);
  if (keepAlive) socket.setKeepAlive(true);
}

/** A Channel over a net.Socket, which must have been created with allowHalfOpen (see the module comment). */
export class SocketChannel implements Channel {
  onData: (chunk: Buffer) => void = noop;
  onEnd: () => void = noop;
  onDrain: () => void = noop;
  onClose: (error: Error | null) => void = noop;
  readonly socket: Socket;
  private failure: Error | null = null;
  /** Whether a completed write is known to be done with its bytes (a plain net.Socket; a TLSSocket, say, may keep them). */
  private readonly writesRelease: boolean;

  /** Takes over `socket`'s reads and events (it stays paused until resume(); bytes it already holds come first). */
  constructor(socket: Socket) {
    this.socket = socket;
    this.writesRelease = socket.constructor === Socket;
    socket.on('error', (err) => (this.failure ??= err));
    socket.on('end', () => this.onEnd());
    socket.on('drain', () => this.onDrain());
    socket.on('close', (hadError) => this.onClose(hadError ? (this.failure ?? new Error('socket error')) : null));
    if (!socket.isPaused()) socket.pause();
    readChunks(socket, (chunk) => this.onData(chunk));
  }

  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  get closed(): boolean {
    return this.socket.closed;
  }

  get readEnded(): boolean {
    return this.socket.readableEnded;
  }

  resume(): void {
    this.socket.resume();
  }

  pause(): void {
    this.socket.pause();
  }

  write(data: Buffer, onWritten: (() => void) | null): boolean {
    if (onWritten === null || !this.writesRelease) return this.socket.write(data);
    return this.socket.write(data, () => onWritten());
  }

  end(): void {
    this.socket.end();
  }

  destroy(error?: Error): void {
    if (error !== undefined) this.failure ??= error;
    this.socket.destroy(error);
  }

  tune(keepAlive: boolean): void {
    tuneSocket(this.socket, keepAlive);
  }

  ends(): SocketEnds {
    const { remoteAddress, remotePort, remoteFamily, localAddress, localPort } = this.socket;
    return { remoteAddress, remotePort, remoteFamily, localAddress, localPort };
  }
}

// ---- accepting and connecting --------------------------------------------------------------

/** Makes `server` (listening) hand each accepted connection to `onChannel` as a HandleChannel, or as a SocketChannel where handles are unavailable; `onError` gets failed accepts. */
export function acceptChannels(server: Server, onChannel: (channel: Channel) => void, onError: (err: Error) => void): void {
  server.on('error', onError);
  const api = streamBindings();
  const listening = (server as unknown as { _handle?: { onconnection?: unknown } | null })._handle;
  if (api === null || listening === null || listening === undefined || typeof listening.onconnection !== 'function') {
    server.on('connection', (socket: Socket) => onChannel(new SocketChannel(socket)));
    return;
  }
  // net.Server keeps binding, listening, address() and close(); only the accept bypasses net.Socket.
  listening.onconnection = (status: number, accepted: StreamHandle | undefined): void => {
    if (status < 0 || accepted === undefined) onError(uvError(status, 'accept'));
    else onChannel(new HandleChannel(accepted, api));
  };
}

/** The first attempt of a connection in progress, for a caller's timeout to destroy. */
export type DialAttempt = Pick<Channel, 'destroy'>;

/** Connects a Socket (allowHalfOpen) to `endpoint`, from `bind` if given; `onAttempt` gets it at once; resolves once connected. */
export function dialSocket(endpoint: Endpoint, bind: Endpoint | null, onAttempt: (attempt: DialAttempt) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket =
      endpoint.kind === 'unix'
        ? netConnect({ path: endpoint.path, allowHalfOpen: true })
        : netConnect({
            host: endpoint.address,
            port: endpoint.port,
            family: endpoint.family,
            allowHalfOpen: true,
            ...(bind?.kind === 'inet' ? { localAddress: bind.address, localPort: bind.port || undefined } : {}),
          });
    socket.on('error', noop); // the life cycle reacts through 'close'
    onAttempt({ destroy: (error?: Error) => socket.destroy(error) });
    const onError = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/** Connects a Channel to `endpoint` (from `bind` if given) on a handle, else on a Socket; `onAttempt` gets it at once; resolves once connected. */
export function dialChannel(endpoint: Endpoint, bind: Endpoint | null, onAttempt: (attempt: DialAttempt) => void): Promise<Channel> {
  const api = streamBindings();
  if (api === null) return dialSocket(endpoint, bind, onAttempt).then((socket) => new SocketChannel(socket));
  return new Promise((resolve, reject) => {
    const handle = endpoint.kind === 'unix' ? api.newPipe() : api.newTcp();
    const channel = new HandleChannel(handle, api);
    onAttempt(channel);
    const where = endpoint.kind === 'unix' ? endpoint.path : `${endpoint.address}:${endpoint.port}`;
    const fail = (status: number, syscall: string): void => {
      const error = uvError(status, syscall, where);
      channel.destroy(error);
      reject(error);
    };
    const req = endpoint.kind === 'unix' ? api.newPipeConnect() : api.newTcpConnect();
    req.oncomplete = (status: number): void => {
      if (channel.destroyed) reject(uvError(status < 0 ? status : -osConstants.errno.ECANCELED, 'connect', where));
      else if (status < 0) fail(status, 'connect');
      else resolve(channel);
    };
    req.address = endpoint.kind === 'unix' ? endpoint.path : endpoint.address;
    let status: number;
    if (endpoint.kind === 'unix') {
      status = (handle as PipeHandle).connect(req, endpoint.path);
    } else {
      const tcp = handle as TcpHandle;
      req.port = endpoint.port;
      if (bind?.kind === 'inet') {
        status = bind.family === 6 ? tcp.bind6(bind.address, bind.port, 0) : tcp.bind(bind.address, bind.port);
        if (status < 0) {
          fail(status, 'bind');
          return;
        }
      }
      status = endpoint.family === 6 ? tcp.connect6(req, endpoint.address, endpoint.port) : tcp.connect(req, endpoint.address, endpoint.port);
    }
    if (status < 0) fail(status, 'connect');
  });
}
