// Owns the packet pipe of an established connection: plaintext chunks are
// sealed into packets (one seal call and one write per chunk read), encrypted
// bytes are reassembled into whole 1060-byte packets and opened a batch at a
// time, with backpressure both ways, half-close carried through, and any error
// closing both sockets without forwarding a byte of a bad packet.

import type { Socket } from 'node:net';
import { MAX_PAYLOAD, PACKET_LEN, type PacketOpener, type PacketSealer } from './crypto/index.js';
import { SpipedError, asSpipedError } from './errors.js';
import { READ_BUFFER_SIZE, readChunks } from './socket-reads.js';

/** Reassembles an encrypted byte stream into whole packets and opens them. */
export class PacketAssembler {
  private readonly opener: PacketOpener;
  private readonly partial = Buffer.allocUnsafe(PACKET_LEN);
  private partialLength = 0;

  /** Opens packets with `opener`. */
  constructor(opener: PacketOpener) {
    this.opener = opener;
  }

  /** True while part of a packet is waiting for the rest. */
  get hasPartialPacket(): boolean {
    return this.partialLength > 0;
  }

  /** Feeds `chunk`; returns the plaintext of every packet it completes (empty if none), in a buffer from `allocate`; throws EBADPACKET. */
  push(chunk: Buffer, allocate: (size: number) => Buffer = Buffer.allocUnsafe): Buffer {
    let offset = 0;
    if (this.partialLength > 0) {
      offset = Math.min(PACKET_LEN - this.partialLength, chunk.length);
      chunk.copy(this.partial, this.partialLength, 0, offset);
      this.partialLength += offset;
      if (this.partialLength < PACKET_LEN) return EMPTY;
    }
    const wholeLength = chunk.length - offset - ((chunk.length - offset) % PACKET_LEN);
    const completed = this.partialLength === PACKET_LEN ? 1 : 0;
    const packetCount = completed + wholeLength / PACKET_LEN;
    let plaintext: Buffer = EMPTY;
    if (packetCount > 0) {
      plaintext = allocate(packetCount * MAX_PAYLOAD);
      let written = 0;
      try {
        if (completed) written += this.opener.openInto(this.partial, plaintext, 0);
        if (wholeLength > 0) {
          written += this.opener.openInto(chunk.subarray(offset, offset + wholeLength), plaintext, written);
        }
      } catch (err) {
        throw asSpipedError(err, 'EBADPACKET', 'Bad packet');
      }
      plaintext = plaintext.subarray(0, written);
    }
    const tailStart = offset + wholeLength;
    this.partialLength = chunk.length - tailStart;
    chunk.copy(this.partial, 0, tailStart);
    return plaintext;
  }
}

const EMPTY = Buffer.alloc(0);

/** Slab sizes: a 64 KiB read sealed (64 packets), and a full shared-buffer read sealed. */
const SLAB_SIZES = [64 * PACKET_LEN, (READ_BUFFER_SIZE / MAX_PAYLOAD) * PACKET_LEN] as const;
/** Outputs up to this size are not worth a slab. */
const SMALL_OUTPUT = 4 * PACKET_LEN;
/** Free slabs kept for reuse per size, process-wide (at most about 2.7 MiB in all). */
const MAX_FREE_SLABS = 8;

/**
 * Output buffers of every pipe in the process, reused once a socket has handed
 * them to the kernel (the write callback), so bulk transfers allocate nothing
 * per chunk and idle connections hold none. An output takes the smaller slab
 * size that fits it, so a queued write never pins more than 16 times its size.
 * Small outputs (interactive traffic) come from Node's buffer pool and are never
 * recycled: only slabs this pool lent out come back, and each only once.
 */
export class SlabPool {
  private readonly free = new Map<number, Buffer[]>(SLAB_SIZES.map((size) => [size, []]));
  private readonly lent = new WeakSet<ArrayBufferLike>();

  /** A buffer of at least `size` bytes: a slab for bulk sizes, else a small pooled Buffer. */
  take(size: number): Buffer {
    if (size <= SMALL_OUTPUT) return Buffer.allocUnsafe(size);
    const slabSize = SLAB_SIZES.find((candidate) => candidate >= size);
    if (slabSize === undefined) return Buffer.allocUnsafeSlow(size); // beyond any read we make; not recycled
    const slab = this.free.get(slabSize)?.pop() ?? Buffer.allocUnsafeSlow(slabSize);
    this.lent.add(slab.buffer);
    return slab;
  }

  /** Takes back a slab from take(), or a view of one, once its contents are no longer needed; ignores anything else. */
  give(view: Buffer): void {
    if (!this.lent.delete(view.buffer)) return;
    const free = this.free.get(view.buffer.byteLength);
    if (free !== undefined && free.length < MAX_FREE_SLABS) free.push(Buffer.from(view.buffer));
  }
}

const slabs = new SlabPool();
const takeSlab = (size: number): Buffer => slabs.take(size);

/** Wires up both directions between `plain` and `encrypted`; resolves once both sockets closed cleanly, rejects with the first error after destroying both. */
export function pipePackets(
  plain: Socket,
  encrypted: Socket,
  coders: { sealer: PacketSealer; opener: PacketOpener },
): Promise<void> {
  return new Promise((resolve, reject) => {
    let failure: SpipedError | null = null;
    let openSockets = 2;
    const fail = (err: unknown, context: string): void => {
      if (failure !== null) return;
      failure = asSpipedError(err, 'ECLOSED', context);
      plain.destroy();
      encrypted.destroy();
    };
    const onClose = (): void => {
      openSockets -= 1;
      if (openSockets === 0) {
        if (failure === null) resolve();
        else reject(failure);
      }
    };
    const assembler = new PacketAssembler(coders.opener);

    // Plaintext -> packets.
    const sealChunk = (chunk: Buffer): void => {
      if (failure !== null) return;
      const slab = slabs.take(Math.ceil(chunk.length / MAX_PAYLOAD) * PACKET_LEN);
      let length: number;
      try {
        length = coders.sealer.sealInto(chunk, slab, 0);
      } catch (err) {
        fail(err, 'Sealing failed');
        return;
      }
      const packets = slab.subarray(0, length);
      if (!encrypted.write(packets, () => slabs.give(packets))) plain.pause();
    };
    encrypted.on('drain', () => plain.resume());
    const onPlainEnd = (): void => void encrypted.end();
    plain.on('end', onPlainEnd);

    // Packets -> plaintext.
    const openChunk = (chunk: Buffer): void => {
      if (failure !== null) return;
      let plaintext: Buffer;
      try {
        plaintext = assembler.push(chunk, takeSlab);
      } catch (err) {
        fail(err, 'Bad packet');
        return;
      }
      if (plaintext.length > 0 && !plain.write(plaintext, () => slabs.give(plaintext))) encrypted.pause();
    };
    plain.on('drain', () => encrypted.resume());
    const onEncryptedEnd = (): void => {
      if (assembler.hasPartialPacket) fail(new SpipedError('EBADPACKET', 'Connection ended inside a packet'), '');
      else plain.end();
    };
    encrypted.on('end', onEncryptedEnd);

    for (const [socket, side, onChunk] of [
      [plain, 'plaintext', sealChunk],
      [encrypted, 'encrypted', openChunk],
    ] as const) {
      socket.on('error', (err) => fail(err, `Error on the ${side} socket`));
      if (socket.destroyed) fail(new SpipedError('ECLOSED', `The ${side} socket closed before data could flow`), '');
      if (socket.closed) {
        onClose();
        continue;
      }
      socket.on('close', (hadError) => {
        if (hadError) fail(new SpipedError('ECLOSED', `The ${side} socket closed with an error`), '');
        onClose();
      });
      readChunks(socket, onChunk);
      socket.resume();
    }
    // An EOF can arrive (and 'end' be emitted) while the handshake or the target connection is under way.
    if (plain.readableEnded) onPlainEnd();
    if (encrypted.readableEnded) onEncryptedEnd();
  });
}
