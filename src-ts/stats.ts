// Owns a tunnel's counters (tunnel.stats(), the --metrics exporter): ended
// connections by outcome, handshake failures by reason, key matches by
// position, plaintext bytes each way. Connections add to them once, when they
// end; live connections' bytes are read from their tallies only when a snapshot
// is taken, so the packet path does nothing but its per-chunk additions.

import { CONNECTION_OUTCOMES, trafficByDirection, type ConnectionOutcome, type ConnectionRecord } from './connection-log.js';
import type { ConnectionTally } from './connection.js';
import type { HandshakeFailureReason } from './errors.js';

/** Every handshake failure reason, in the order metrics list them. */
export const HANDSHAKE_FAILURE_REASONS: readonly HandshakeFailureReason[] = ['bad_mac', 'bad_dh_value', 'no_forward_secrecy', 'peer_closed', 'socket_error'];

/** A snapshot of a tunnel's counters (all counts since it started, except active and queued). */
export interface TunnelStats {
  connections: Record<ConnectionOutcome, number>; // ended connections, by outcome
  active: number; // connections being served now
  queued: number; // connections held at the -n limit now
  bytesToTarget: number; // plaintext bytes carried toward -t (live connections included)
  bytesFromTarget: number; // plaintext bytes carried back
  handshakeFailures: Record<HandshakeFailureReason, number>; // by reason
  keyMatches: number[]; // handshakes done with key i (0 = the first -k), live connections included
}

/** The counters of one tunnel. */
export class TunnelCounters {
  private readonly mode: 'encrypt' | 'decrypt';
  private readonly connections = Object.fromEntries(CONNECTION_OUTCOMES.map((outcome) => [outcome, 0])) as Record<ConnectionOutcome, number>;
  private readonly failures = Object.fromEntries(HANDSHAKE_FAILURE_REASONS.map((reason) => [reason, 0])) as Record<HandshakeFailureReason, number>;
  private readonly keyMatches: number[] = [];
  private bytesToTarget = 0;
  private bytesFromTarget = 0;

  /** Counters for a tunnel in `mode` (which says what sealed and opened bytes mean). */
  constructor(mode: 'encrypt' | 'decrypt') {
    this.mode = mode;
  }

  /** Adds an ended connection. */
  add(record: ConnectionRecord): void {
    this.connections[record.outcome] += 1;
    if (record.reason !== null) this.failures[record.reason] += 1;
    if (record.keyIndex !== null) this.keyMatches[record.keyIndex] = (this.keyMatches[record.keyIndex] ?? 0) + 1;
    this.bytesToTarget += record.toTarget;
    this.bytesFromTarget += record.fromTarget;
  }

  /** The counters now, with the live connections' `tallies` added in. */
  snapshot(live: Iterable<ConnectionTally>, active: number, queued: number): TunnelStats {
    const keyMatches = [...this.keyMatches];
    let toTarget = this.bytesToTarget;
    let fromTarget = this.bytesFromTarget;
    for (const tally of live) {
      const traffic = trafficByDirection(this.mode, tally);
      toTarget += traffic.toTarget;
      fromTarget += traffic.fromTarget;
      if (tally.keyIndex !== null) keyMatches[tally.keyIndex] = (keyMatches[tally.keyIndex] ?? 0) + 1;
    }
    return {
      connections: { ...this.connections },
      active,
      queued,
      bytesToTarget: toTarget,
      bytesFromTarget: fromTarget,
      handshakeFailures: { ...this.failures },
      keyMatches: Array.from(keyMatches, (count) => count ?? 0),
    };
  }
}
