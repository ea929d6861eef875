// Owns the shared vocabulary of the packet layer: packet-format constants, the
// backend/core interfaces both crypto backends implement, and BadPacketError.
// No I/O and no crypto here; index.ts validates arguments, backends do the work.

/** Bytes of one packet on the wire: 1028 encrypted bytes + 32-byte HMAC-SHA256. */
export const PACKET_LEN = 1060;
/** Most plaintext bytes carried by one packet. */
export const MAX_PAYLOAD = 1024;
/** Bytes of the encrypted part of a packet (payload, zero padding, be32 length). */
export const ENCRYPTED_LEN = 1028;
/** Bytes of the HMAC-SHA256 tag that ends a packet. */
export const MAC_LEN = 32;
/** Bytes of each key (AES-256 key, HMAC-SHA256 key). */
export const KEY_LEN = 32;
/** Largest value a packet counter may hold (2^64 - 1); such a counter can send nothing. */
export const MAX_COUNTER = 0xffff_ffff_ffff_ffffn;
/** Largest packet number that may be used for a packet (2^64 - 2): the counter never wraps. */
export const MAX_PACKET_NUMBER = MAX_COUNTER - 1n;

/** Why an opener rejected its input. */
export type BadPacketReason = 'packet' | 'size' | 'poisoned';

/** Thrown by PacketOpener for any rejected input; `code` is always 'EBADPACKET'. */
export class BadPacketError extends Error {
  /** Always 'EBADPACKET', like the native addon's errors. */
  readonly code = 'EBADPACKET' as const;
  /** 'packet': bad MAC or length field; 'size': not whole packets; 'poisoned': an earlier failure. */
  readonly reason: BadPacketReason;

  /** Builds the error with the message used by both backends for `reason`. */
  constructor(reason: BadPacketReason, detail?: string, options?: { cause?: unknown }) {
    super(BadPacketError.messageFor(reason, detail), options);
    this.name = 'BadPacketError';
    this.reason = reason;
  }

  /** The backend-independent message for a rejection of kind `reason`. */
  static messageFor(reason: BadPacketReason, detail?: string): string {
    switch (reason) {
      case 'packet':
        return 'spiped: bad packet: MAC verification failed or invalid length field' + (detail ? ` (${detail})` : '');
      case 'size':
        return `spiped: bad packet: input is not a whole number of ${PACKET_LEN}-byte packets` + (detail ? ` (${detail})` : '');
      case 'poisoned':
        return 'spiped: packet opener refuses all input after an earlier bad packet';
    }
  }
}

/** Thrown by any use of a PacketSealer/PacketOpener after dispose(); `code` is always 'EDISPOSED'. */
export class DisposedError extends Error {
  /** Always 'EDISPOSED', like the native addon's error for a disposed handle. */
  readonly code = 'EDISPOSED' as const;

  /** `what` names the disposed object, e.g. 'PacketSealer'. */
  constructor(what: string) {
    super(`spiped-native: this ${what} was disposed; its keys are wiped`);
    this.name = 'DisposedError';
  }
}

/** A stateful sealer owned by a backend; arguments are already validated by index.ts. */
export interface SealerCore {
  /** Packet number the next sealed packet will get. */
  readonly nextPacket: bigint;
  /** Seals `data` (validated, counter room checked) into fresh packets. */
  seal(data: Uint8Array): Buffer;
  /** Seals `data` into `out` at `outOffset` (room checked); returns bytes written. */
  sealInto(data: Uint8Array, out: Uint8Array, outOffset: number): number;
  /** Wipes and frees the key material now; idempotent; later calls throw a DisposedError. */
  dispose(): void;
}

/** A stateful opener owned by a backend; arguments are already validated by index.ts. */
export interface OpenerCore {
  /** Packet number the next packet must carry. */
  readonly nextPacket: bigint;
  /** Opens whole packets (length a non-zero multiple of PACKET_LEN); throws an Error with code 'EBADPACKET'. */
  open(packets: Uint8Array): Buffer;
  /** Opens whole packets into `out` (room for n*MAX_PAYLOAD checked); returns bytes written. */
  openInto(packets: Uint8Array, out: Uint8Array, outOffset: number): number;
  /** Wipes and frees the key material now; idempotent; later calls throw a DisposedError. */
  dispose(): void;
}

/** A crypto backend: creates sealer/opener cores from validated 32-byte keys, and computes the handshake's PBKDF2 and HMAC. */
export interface PacketBackend {
  /** Which implementation this is. */
  readonly name: 'native' | 'node-crypto';
  /** Creates a sealer starting at packet `firstPacket`. */
  createSealer(encKey: Uint8Array, macKey: Uint8Array, firstPacket: bigint): SealerCore;
  /** Creates an opener expecting packet `firstPacket` first. */
  createOpener(encKey: Uint8Array, macKey: Uint8Array, firstPacket: bigint): OpenerCore;
  /** One-iteration PBKDF2-HMAC-SHA256 of `length` (1 to 1024) bytes: the handshake's dk_1 and dk_2. */
  pbkdf2Sha256(key: Uint8Array, salt: Uint8Array, length: number): Buffer;
  /** HMAC-SHA256(key, data), 32 bytes: the handshake's DH message MACs. */
  hmacSha256(key: Uint8Array, data: Uint8Array): Buffer;
}

/** CPU features relevant to the native backend. */
export interface CpuFeatures {
  aesni: boolean;
  shani: boolean;
  vaes: boolean;
  avx2: boolean;
}

/** Which native kernels run: hand-written x86_64 (self-tested) or RustCrypto's portable core. */
export type NativeKernels = 'x86_64' | 'portable';

/** What cryptoBackend() reports. */
export interface CryptoBackendInfo {
  name: 'native' | 'node-crypto';
  aesni: boolean;
  shani: boolean;
  vaes: boolean;
  /** The native kernels in use; null for node-crypto. */
  kernels: NativeKernels | null;
  reason?: string;
}
