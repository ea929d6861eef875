// The package's main export: the packet crypto (native or node:crypto), the
// library entry points, and the protocol stages for callers who compose their own.

export { PacketSealer, PacketOpener, BadPacketError, DisposedError, cryptoBackend, PACKET_LEN, MAX_PAYLOAD } from './crypto/index.js';
export { connect, createServer, createTunnel, DEFAULTS } from './api.js';
export type { ConnectOptions, SessionOptions, Tunnel, TunnelOptions } from './api.js';
export { SecureStream } from './secure-stream.js';
export { SpipedError } from './errors.js';
export type { SpipedErrorCode } from './errors.js';
export { parseAddress, formatAddress, resolveAddress } from './address.js';
export type { SocketAddress, Endpoint } from './address.js';
export { loadKey, hashKeyBytes } from './keyfile.js';
export type { KeySource } from './keyfile.js';
export { Dispatcher } from './dispatcher.js';
export { handshake } from './handshake.js';
export { pipePackets, PacketAssembler } from './pipe.js';
export { formatConnectionRecord, CONNECTION_OUTCOMES } from './connection-log.js';
export type { ConnectionRecord, ConnectionOutcome } from './connection-log.js';
export type { HandshakeFailureReason } from './errors.js';
export type { ReloadOutcome } from './dispatcher.js';
export type { TunnelStats } from './stats.js';
