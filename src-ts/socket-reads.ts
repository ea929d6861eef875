// Owns how established connections read their sockets. Where this Node allows
// it, a socket reads straight into one buffer shared by the whole process
// (Node's `onread` user-buffer mode, switched on for a socket that is already
// open, as net.Server hands out accepted sockets without that option), so a
// bulk transfer allocates, zero-fills and copies nothing per read. A chunk is
// therefore valid only during the callback, which must copy what it keeps;
// libuv calls back right after each read, so one buffer serves every socket.
// Elsewhere, or with SPIPED_NATIVE_USER_BUFFER=0, chunks come from 'data' events.

import type { Socket } from 'node:net';

/** The most one read returns in user-buffer mode (the shared buffer's size). */
export const READ_BUFFER_SIZE = 256 * 1024;

/** How readChunks() reads a socket. */
export type ReadMode = 'user-buffer' | 'data-events';

/** The native stream handle method behind `onread`. */
interface UserBufferHandle {
  useUserBuffer(buffer: Uint8Array): void;
}

/** The Socket internals `onread` sets up: its buffer and callback slots, and the handle. */
interface UserBufferHooks {
  bufferSlot: symbol;
  callbackSlot: symbol;
  handle: UserBufferHandle;
}

let sharedBuffer: Buffer | null = null;

/** The one buffer every user-buffer read in the process goes into (channel.ts reads its handles into it too). */
export function sharedReadBuffer(): Buffer {
  sharedBuffer ??= Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
  return sharedBuffer;
}

/** True when `handle` is a native stream handle that can read into a caller's buffer. */
function isUserBufferHandle(handle: unknown): handle is UserBufferHandle {
  return typeof handle === 'object' && handle !== null && typeof (handle as Partial<UserBufferHandle>).useUserBuffer === 'function';
}

/** Node's `onread` slots, found on the first socket that has them (the same symbols for every socket); null if absent. */
let knownSlots: { bufferSlot: symbol; callbackSlot: symbol } | null | undefined;

/** The `onread` slots of `socket`'s class, looked up once per process. */
function userBufferSlots(socket: Socket): { bufferSlot: symbol; callbackSlot: symbol } | null {
  if (knownSlots === undefined) {
    const symbols = Object.getOwnPropertySymbols(socket);
    const bufferSlot = symbols.find((symbol) => symbol.description === 'kBuffer');
    const callbackSlot = symbols.find((symbol) => symbol.description === 'kBufferCb');
    knownSlots = bufferSlot === undefined || callbackSlot === undefined ? null : { bufferSlot, callbackSlot };
  }
  return knownSlots;
}

/** The internals needed to switch `socket` to user-buffer reads, or null when this Node (or the environment) does not allow it. */
function userBufferHooks(socket: Socket): UserBufferHooks | null {
  if (process.env['SPIPED_NATIVE_USER_BUFFER'] === '0') return null;
  const found = userBufferSlots(socket);
  const handle: unknown = (socket as unknown as { _handle?: unknown })._handle;
  if (found === null || !isUserBufferHandle(handle)) return null;
  const slots = socket as unknown as Record<symbol, unknown>;
  // A socket created with its own `onread` keeps it (and a socket without these slots is not one we know).
  if (slots[found.bufferSlot] !== null || slots[found.callbackSlot] !== null) return null;
  return { ...found, handle };
}

/**
 * Calls `onChunk` with each chunk read from `socket` from now on, valid only during
 * the call; reading starts when the caller resumes the socket, and pause() stops it.
 * Bytes the socket had already buffered arrive first, through 'data'. Returns the mode used.
 */
export function readChunks(socket: Socket, onChunk: (chunk: Buffer) => void): ReadMode {
  socket.on('data', onChunk);
  const hooks = userBufferHooks(socket);
  if (hooks === null) return 'data-events';
  const buffer = sharedReadBuffer();
  const slots = socket as unknown as Record<symbol, unknown>;
  slots[hooks.bufferSlot] = buffer;
  // Returning false makes Node stop reading (as pause() already has, on backpressure).
  slots[hooks.callbackSlot] = (length: number): boolean => {
    onChunk(buffer.subarray(0, length));
    return !socket.isPaused();
  };
  hooks.handle.useUserBuffer(buffer);
  return 'user-buffer';
}
