// Test helpers for misbehaving peers on loopback: a raw TCP client that sends
// nothing, garbage or half a handshake and records what came back and when and
// how the daemon dropped it, and a relay that forwards the first bytes of one
// direction and then resets one side mid-stream.

import { connect, createServer, type Server, type Socket } from 'node:net';
import { relayDirection } from './processes.js';

/** How a raw client's connection ended: the peer's EOF, a reset or other error, or our own destroy(). */
export type CloseKind = 'eof' | 'error' | 'local';

/** When (Date.now()) and how a raw client's socket closed. */
export interface Closed {
  at: number;
  how: CloseKind;
}

/** A raw TCP client: reads everything (so the peer's EOF is seen), writes only what the test tells it to. */
export interface RawClient {
  socket: Socket;
  startedAt: number; // Date.now() before connecting: the daemon cannot have accepted it earlier
  connectedAt: number;
  /** Every byte the peer sent so far. */
  received: () => Buffer;
  /** Resolves true once at least `count` bytes have arrived, false if the socket closes or `timeoutMs` passes first. */
  receivedAtLeast: (count: number, timeoutMs: number) => Promise<boolean>;
  /** Resolves when the socket has closed (whoever closed it). */
  closed: Promise<Closed>;
  /** True once the socket has closed. */
  isClosed: () => boolean;
}

/** Connects to `port` on `host`; resolves once connected (rejects if the connection fails). */
export function openRaw(port: number, host = '127.0.0.1'): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const startedAt = Date.now();
    const socket = connect({ port, host });
    const parts: Buffer[] = [];
    let length = 0;
    let how: CloseKind = 'local';
    let closedFlag = false;
    let onBytes: () => void = () => {};
    socket.on('data', (chunk: Buffer) => {
      parts.push(chunk);
      length += chunk.length;
      onBytes();
    });
    socket.on('end', () => (how = 'eof'));
    socket.on('error', () => (how = how === 'eof' ? how : 'error'));
    const closed = new Promise<Closed>((resolveClosed) =>
      socket.once('close', () => {
        closedFlag = true;
        onBytes();
        resolveClosed({ at: Date.now(), how });
      }),
    );
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve({
        socket,
        startedAt,
        connectedAt: Date.now(),
        received: () => Buffer.concat(parts),
        receivedAtLeast: (count, timeoutMs) =>
          new Promise<boolean>((resolveBytes) => {
            const settle = (): void => {
              clearTimeout(timer);
              onBytes = () => {};
              resolveBytes(length >= count);
            };
            const timer = setTimeout(settle, timeoutMs);
            onBytes = () => {
              if (length >= count || closedFlag) settle();
            };
            onBytes();
          }),
        closed,
        isClosed: () => closedFlag,
      });
    });
  });
}

/** Where a cutting relay breaks the stream: after `after` bytes of `direction`, it resets the socket on side `reset` and ends the other. */
export interface Cut {
  direction: 'toServer' | 'toClient';
  after: number;
  reset: 'client' | 'server';
}

/** A relay that cuts one connection when armed. */
export interface CuttingRelay {
  server: Server;
  /** Cuts the next connection as `cut` says; resolves once the cut has happened. */
  arm: (cut: Cut) => Promise<void>;
}

/**
 * A TCP relay from `listenPort` to `targetPort` that carries connections
 * untouched, except the first one after each arm(cut): that one carries
 * exactly `cut.after` bytes of `cut.direction` (the rest of that chunk and
 * everything after it are dropped), then resets (RST) its socket on side
 * `cut.reset` and closes the other side with a FIN at the same moment.
 */
export function startCuttingRelay(listenPort: number, targetPort: number): Promise<CuttingRelay> {
  let armed: { cut: Cut; done: () => void } | null = null;
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const cutting = armed;
    armed = null;
    const upstream = connect({ port: targetPort, host: '127.0.0.1', allowHalfOpen: true });
    const sides = { client, server: upstream };
    let stopped = false;
    const forward = (from: Socket, to: Socket, direction: Cut['direction']): void =>
      relayDirection(from, to, (chunk, seen) => {
        if (stopped) return;
        if (cutting === null || direction !== cutting.cut.direction || seen + chunk.length < cutting.cut.after) {
          to.write(chunk);
          return;
        }
        const { cut, done } = cutting;
        to.write(chunk.subarray(0, cut.after - seen));
        stopped = true;
        const other = cut.reset === 'client' ? sides.server : sides.client;
        // The next turn of the event loop, once the forwarded bytes have left.
        setImmediate(() => {
          sides[cut.reset].resetAndDestroy();
          other.destroySoon(); // FIN once written, then closed
          done();
        });
      });
    forward(client, upstream, 'toServer');
    forward(upstream, client, 'toClient');
  });
  const arm = (cut: Cut): Promise<void> => new Promise((resolve) => (armed = { cut, done: resolve }));
  return new Promise((resolve) => {
    server.listen(listenPort, '127.0.0.1', () => resolve({ server, arm }));
  });
}
