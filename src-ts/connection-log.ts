// Owns what the daemon says about each connection once it has ended: the
// record (peer, key, duration, bytes each way, outcome), how a failure maps to
// an outcome, and the one-line key=value text of --log-connections, whose
// fields and order are stable (see README "Connection logs").

import type { SocketEnds } from './channel.js';
import type { HandshakeFailureReason, SpipedError } from './errors.js';
import type { PipeTraffic } from './pipe.js';

/** How a connection ended. */
export type ConnectionOutcome =
  | 'ok' // both sides closed cleanly
  | 'connect_failed' // the target could not be connected to
  | 'handshake_failed' // see `reason`
  | 'bad_packet' // a packet failed authentication, had a bad length, or the stream ended inside one
  | 'timeout' // connecting or the handshake took longer than -o
  | 'error'; // a socket failed (reset) while data was flowing

/** Every outcome, in the order logs and metrics list them. */
export const CONNECTION_OUTCOMES: readonly ConnectionOutcome[] = ['ok', 'connect_failed', 'handshake_failed', 'bad_packet', 'timeout', 'error'];

/** One ended connection. */
export interface ConnectionRecord {
  peer: string; // the accepted peer: "127.0.0.1:40312", "[::1]:40312", or "unix" for a Unix socket ("" if nothing listened for records when it was accepted)
  keyIndex: number | null; // which key the handshake used (0 = the first -k), null if none did
  durationMs: number; // from accept to the last close
  toTarget: number; // plaintext bytes carried toward the target (-t)
  fromTarget: number; // plaintext bytes carried back from the target
  outcome: ConnectionOutcome;
  reason: HandshakeFailureReason | null; // why, for handshake_failed
  error: SpipedError | null; // what ended it, unless ok
}

/** A pipe's sealed/opened counts as bytes toward the target and back: -e seals what goes to the target, -d opens it. */
export function trafficByDirection(mode: 'encrypt' | 'decrypt', traffic: PipeTraffic): { toTarget: number; fromTarget: number } {
  return mode === 'encrypt' ? { toTarget: traffic.sealed, fromTarget: traffic.opened } : { toTarget: traffic.opened, fromTarget: traffic.sealed };
}

/** The peer of an accepted socket (a net.Socket or a Channel's ends()) as the log shows it (read at accept time: a closed socket forgets it). */
export function peerOf(socket: SocketEnds): string {
  const address = socket.remoteAddress;
  if (address === undefined) return 'unix';
  return socket.remoteFamily === 'IPv6' ? `[${address}]:${socket.remotePort}` : `${address}:${socket.remotePort}`;
}

/** The outcome a connection's failure stands for (null = it ended cleanly). */
export function outcomeOf(error: SpipedError | null): ConnectionOutcome {
  if (error === null) return 'ok';
  switch (error.code) {
    case 'ECONNECT':
      return 'connect_failed';
    case 'EHANDSHAKE':
      return 'handshake_failed';
    case 'EBADPACKET':
      return 'bad_packet';
    case 'ETIMEOUT':
      return 'timeout';
    default:
      return 'error';
  }
}

/** The --log-connections line: "connection [tunnel=<name> ]peer=... key=... duration_ms=... to_target=... from_target=... outcome=... reason=..." (key 1 = the first -k; "-" for none; `tunnel` given by `spiped-native run`). */
export function formatConnectionRecord(record: ConnectionRecord, tunnel?: string): string {
  const key = record.keyIndex === null ? '-' : String(record.keyIndex + 1);
  return (
    `connection ${tunnel === undefined ? '' : `tunnel=${tunnel} `}peer=${record.peer} key=${key} duration_ms=${Math.round(record.durationMs)}` +
    ` to_target=${record.toTarget} from_target=${record.fromTarget} outcome=${record.outcome} reason=${record.reason ?? '-'}`
  );
}
