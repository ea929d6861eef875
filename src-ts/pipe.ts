// Owns the packet pipe of an established connection (two Channels, or two
// sockets for library callers): plaintext chunks are
// sealed into packets (one seal call and one write per chunk read), encrypted
// bytes are reassembled into whole 1060-byte packets and opened a batch at a
// time, with backpressure both ways, half-close carried through, and any error
// closing both sockets without forwarding a byte of a bad packet.

import type { Socket } from 'node:net';
import { SocketChannel, type Channel } from './channel.js';
import { MAX_PAYLOAD, PACKET_LEN, type PacketOpener, type PacketSealer } from './crypto/index.js';
import { SpipedError, asSpipedError } from './errors.js';
import { READ_BUFFER_SIZE } from './socket-reads.js';

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

  /** Feeds `chunk`; returns the plaintext of every packet it completes (empty if none), at the start of one buffer from `allocate`; throws EBADPACKET. */
  push(chunk: Buffer, allocate: (size: number) => Buffer = Buffer.allocUnsafe): Buffer {
    let offset = 0;
    if (this.partialLength > 0) {
      offset = Math.min(PACKET_LEN - this.partialLength, chunk.length);
      chunk.copy(this.partial, this.partialLength, 0, offset);
      this.partialLength += offset;
      if (this.partialLength < PACKET_LEN) return EMPTY;
    }
    const tailStart = chunk.length - ((chunk.length - offset) % PACKET_LEN);
    const completed = this.partialLength === PACKET_LEN ? 1 : 0;
    const packetCount = completed + (tailStart - offset) / PACKET_LEN;
    let plaintext: Buffer = EMPTY;
    if (packetCount > 0) {
      plaintext = allocate(packetCount * MAX_PAYLOAD);
      let written = 0;
      try {
        if (completed) written = this.opener.openInto(this.partial, plaintext, 0);
        if (tailStart > offset) {
          const whole = offset === 0 && tailStart === chunk.length ? chunk : chunk.subarray(offset, tailStart);
          written += this.opener.openInto(whole, plaintext, written);
        }
      } catch (err) {
        throw asSpipedError(err, 'EBADPACKET', 'Bad packet');
      }
      plaintext = plaintext.subarray(0, written);
    }
    this.partialLength = chunk.length - tailStart;
    if (this.partialLength > 0) chunk.copy(this.partial, 0, tailStart);
    return plaintext;
  }
}

const EMPTY = Buffer.alloc(0);

/** Slab sizes: a 64 KiB read sealed (64 packets), and a full shared-buffer read sealed. */
const SLAB_SIZES = [64 * PACKET_LEN, (READ_BUFFER_SIZE / MAX_PAYLOAD) * PACKET_LEN] as const;
/** Outputs up to this size (interactive traffic) share one small buffer instead of a slab. */
const SMALL_OUTPUT = 4 * PACKET_LEN;
/** Free slabs kept for reuse per size, process-wide (at most about 2.7 MiB in all). */
const MAX_FREE_SLABS = 8;

/**
 * Output buffers of every pipe in the process, reused once a channel has handed
 * them to the kernel, so neither bulk nor interactive traffic allocates per chunk
 * and idle connections hold none. A bulk output takes the smaller slab size that
 * fits it (so a queued write never pins more than 16 times its size); a small
 * output (up to 4 packets) takes the one small buffer. Either comes back through
 * the channel's written callback: at once when the write went straight to the
 * kernel (the usual case), else once the queued write is done (meanwhile the pool
 * makes a new small buffer). Only buffers this pool lent come back, each once; a
 * channel that cannot say when its bytes are free (a TLSSocket under a
 * SocketChannel, say) never calls back, and its buffers are left to the garbage
 * collector. The hot path compares Buffer objects only: reading a view's
 * `.buffer` costs a call into V8's runtime.
 */
export class SlabPool {
  private readonly free = new Map<number, Buffer[]>(SLAB_SIZES.map((size) => [size, []]));
  private readonly lentSlabs = new WeakSet<Buffer>();
  /** The small buffer, when free. */
  private small: Buffer | null = null;
  /** The small buffer lent out last, until it comes back. */
  private lentSmall: Buffer | null = null;

  /** A buffer of at least `size` bytes, to be written with write() or handed back with give(): a slab for bulk sizes, else the small buffer. */
  take(size: number): Buffer {
    if (size <= SMALL_OUTPUT) {
      const buffer = this.small ?? Buffer.allocUnsafeSlow(SMALL_OUTPUT);
      this.small = null;
      this.lentSmall = buffer;
      return buffer;
    }
    const slabSize = SLAB_SIZES.find((candidate) => candidate >= size);
    if (slabSize === undefined) return Buffer.allocUnsafeSlow(size); // beyond any read we make; not recycled
    const slab = this.free.get(slabSize)?.pop() ?? Buffer.allocUnsafeSlow(slabSize);
    this.lentSlabs.add(slab);
    return slab;
  }

  /** Takes back a buffer from take() once its contents are no longer needed; ignores anything else, and a buffer already given back. */
  give(buffer: Buffer): void {
    if (buffer === this.lentSmall) {
      this.lentSmall = null;
      this.small = buffer;
      return;
    }
    if (!this.lentSlabs.delete(buffer)) return;
    const free = this.free.get(buffer.length);
    if (free !== undefined && free.length < MAX_FREE_SLABS) free.push(buffer);
  }

  /** Writes `view`, a view of `buffer` (from take()), to `channel` and takes the buffer back once the channel no longer needs it; returns write()'s result. */
  write(channel: Channel, buffer: Buffer, view: Buffer): boolean {
    return channel.write(view, () => this.give(buffer));
  }
}

const slabs = new SlabPool();

/** Plaintext bytes a pipe has carried so far, each way (counted per chunk, plain number additions). */
export interface PipeTraffic {
  sealed: number; // read from the plaintext socket and sent as packets
  opened: number; // opened from packets and written to the plaintext socket
}

/** Wires up both directions between the sockets `plain` and `encrypted` (see pipeChannels); resolves once both closed cleanly, rejects with the first error after destroying both; either way the coders are disposed once both sockets closed. */
export function pipePackets(
  plain: Socket,
  encrypted: Socket,
  coders: { sealer: PacketSealer; opener: PacketOpener },
  traffic: PipeTraffic = { sealed: 0, opened: 0 },
): Promise<void> {
  return pipeChannels(new SocketChannel(plain), new SocketChannel(encrypted), coders, traffic, EMPTY);
}

/** Wires up both directions between `plain` and `encrypted`, `leftover` (encrypted bytes read past the handshake) first, counting into `traffic`; resolves once both channels closed cleanly, rejects with the first error after destroying both; either way the coders are disposed once both closed. */
export function pipeChannels(
  plain: Channel,
  encrypted: Channel,
  coders: { sealer: PacketSealer; opener: PacketOpener },
  traffic: PipeTraffic,
  leftover: Buffer,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let failure: SpipedError | null = null;
    let openChannels = 2;
    const fail = (err: unknown, context: string): void => {
      if (failure !== null) return;
      failure = asSpipedError(err, 'ECLOSED', context);
      plain.destroy();
      encrypted.destroy();
    };
    const onClose = (): void => {
      openChannels -= 1;
      if (openChannels === 0) {
        // Both channels are gone: the session's keys are wiped and freed now, not at garbage collection.
        coders.sealer.dispose();
        coders.opener.dispose();
        if (failure === null) resolve();
        else reject(failure);
      }
    };
    const assembler = new PacketAssembler(coders.opener);

    // Plaintext -> packets.
    plain.onData = (chunk: Buffer): void => {
      if (failure !== null) return;
      const slab = slabs.take(Math.ceil(chunk.length / MAX_PAYLOAD) * PACKET_LEN);
      let length: number;
      try {
        length = coders.sealer.sealInto(chunk, slab, 0);
      } catch (err) {
        slabs.give(slab);
        fail(err, 'Sealing failed');
        return;
      }
      traffic.sealed += chunk.length;
      if (!slabs.write(encrypted, slab, slab.subarray(0, length))) plain.pause();
    };
    encrypted.onDrain = () => plain.resume();
    plain.onEnd = () => encrypted.end();

    // Packets -> plaintext: push() opens into the start of a buffer taken here.
    let output: Buffer = EMPTY;
    const takeOutput = (size: number): Buffer => (output = slabs.take(size));
    const openChunk = (chunk: Buffer): void => {
      if (failure !== null) return;
      let plaintext: Buffer;
      try {
        plaintext = assembler.push(chunk, takeOutput);
      } catch (err) {
        fail(err, 'Bad packet');
        return;
      }
      traffic.opened += plaintext.length;
      if (plaintext.length > 0 && !slabs.write(plain, output, plaintext)) encrypted.pause();
    };
    encrypted.onData = openChunk;
    plain.onDrain = () => encrypted.resume();
    encrypted.onEnd = () => {
      if (assembler.hasPartialPacket) fail(new SpipedError('EBADPACKET', 'Connection ended inside a packet'), '');
      else plain.end();
    };

    for (const [channel, side] of [
      [plain, 'plaintext'],
      [encrypted, 'encrypted'],
    ] as const) {
      if (channel.destroyed) fail(new SpipedError('ECLOSED', `The ${side} socket closed before data could flow`), '');
      if (channel.closed) {
        onClose();
        continue;
      }
      channel.onClose = (error) => {
        if (error !== null) fail(error, `Error on the ${side} socket`);
        onClose();
      };
    }
    if (leftover.length > 0) openChunk(leftover);
    // An EOF can arrive while the handshake or the target connection is under way.
    for (const channel of [plain, encrypted]) {
      if (channel.readEnded) channel.onEnd();
      else channel.resume();
    }
  });
}
