// Owns the library's view of an established connection: a Duplex of plaintext
// over the encrypted socket. Writes are sealed (one seal call per chunk),
// reads are reassembled and opened; backpressure, half-close and destroy are
// carried through to the socket.

import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { SpipedError, asSpipedError } from './errors.js';
import { disposeSession, type Session } from './handshake.js';
import { PacketAssembler } from './pipe.js';
import { readChunks } from './socket-reads.js';

/** A plaintext Duplex over `socket`, whose handshake produced `session`. */
export class SecureStream extends Duplex {
  /** The encrypted socket underneath (for addresses and socket options). */
  readonly socket: Socket;
  private readonly session: Session;
  private readonly assembler: PacketAssembler;

  /** Takes over `socket` (handshake already done; unread bytes still queued in it). */
  constructor(socket: Socket, session: Session) {
    super({ allowHalfOpen: true });
    this.socket = socket;
    this.session = session;
    this.assembler = new PacketAssembler(session.opener);
    readChunks(socket, (chunk: Buffer) => {
      let plaintext: Buffer;
      try {
        plaintext = this.assembler.push(chunk);
      } catch (err) {
        this.destroy(asSpipedError(err, 'EBADPACKET', 'Bad packet'));
        return;
      }
      if (plaintext.length > 0 && !this.push(plaintext)) socket.pause();
    });
    let sawEnd = false;
    const onEnd = (): void => {
      sawEnd = true;
      if (this.assembler.hasPartialPacket) this.destroy(new SpipedError('EBADPACKET', 'Connection ended inside a packet'));
      else this.push(null);
    };
    socket.on('end', onEnd);
    socket.on('error', (err) => this.destroy(asSpipedError(err, 'ECLOSED', 'Connection failed')));
    socket.on('close', () => {
      disposeSession(session); // what was opened is already buffered; nothing more can be sealed or opened
      // A clean close after the peer's EOF keeps what is still buffered for a slow reader.
      if (!this.destroyed && !sawEnd) this.destroy(new SpipedError('ECLOSED', 'Connection closed'));
    });
    if (socket.readableEnded) onEnd(); // the EOF arrived with (or right behind) the handshake
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let packets: Buffer;
    try {
      packets = this.session.sealer.seal(chunk);
    } catch (err) {
      callback(asSpipedError(err, 'ECLOSED', 'Sealing failed'));
      return;
    }
    if (this.socket.write(packets)) callback();
    else this.socket.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }
}
