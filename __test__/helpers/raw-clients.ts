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

/**
 * A TCP relay from `listenPort` to `targetPort`. Its first connection carries
 * exactly `cut.after` bytes of `cut.direction` (the rest of that chunk is
 * dropped), then resets (RST) the socket on side `cut.reset` and closes the
 * other side with a FIN at the same moment. Later connections are relayed
 * untouched. `cutDone` resolves once the cut has happened.
 */
export function startCuttingRelay(listenPort: number, targetPort: number, cut: Cut): Promise<{ server: Server; cutDone: Promise<void> }> {
  let connections = 0;
  let markCut: () => void = () => {};
  const cutDone = new Promise<void>((resolve) => (markCut = resolve));
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const cutting = connections++ === 0;
    const upstream = connect({ port: targetPort, host: '127.0.0.1', allowHalfOpen: true });
    const sides = { client, server: upstream };
    let done = false;
    const forward = (from: Socket, to: Socket, direction: Cut['direction']): void =>
      relayDirection(from, to, (chunk, seen) => {
        if (done) return;
        if (!cutting || direction !== cut.direction || seen + chunk.length < cut.after) {
          to.write(chunk);
          return;
        }
        to.write(chunk.subarray(0, cut.after - seen));
        done = true;
        const other = cut.reset === 'client' ? sides.server : sides.client;
        // The next turn of the event loop, once the forwarded bytes have left.
        setImmediate(() => {
          sides[cut.reset].resetAndDestroy();
          other.destroySoon(); // FIN once written, then closed
          markCut();
        });
      });
    forward(client, upstream, 'toServer');
    forward(upstream, client, 'toClient');
  });
  return new Promise((resolve) => {
    server.listen(listenPort, '127.0.0.1', () => resolve({ server, cutDone }));
  });
}
