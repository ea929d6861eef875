// Owns a daemon's keys (K for each -k) over its life: the current list, which a
// reload replaces; leases that handshakes in progress hold on the list they
// started with; and wiping, so that a replaced list is wiped as soon as no
// handshake uses it any more, and every list once the daemon has drained.

/** One generation of keys and the handshakes using it. */
interface KeyGeneration {
  keys: readonly Buffer[];
  leases: number;
  retired: boolean;
}

/** A handshake's hold on the keys it started with; release() once the handshake is over. */
export interface KeyLease {
  keys: readonly Buffer[];
  release: () => void;
}

/** The keys of one daemon: current ones for new handshakes, older ones kept only while a handshake still uses them. */
export class KeyRing {
  private current: KeyGeneration;
  private closed = false;

  /** Starts with `keys` (owned from now on: this ring wipes them). */
  constructor(keys: readonly Buffer[]) {
    this.current = { keys, leases: 0, retired: false };
  }

  /** The current keys (for reading only; hold a lease to use them across an await). */
  get keys(): readonly Buffer[] {
    return this.current.keys;
  }

  /** Leases the current keys to a handshake; the lease must be released exactly once. */
  acquire(): KeyLease {
    const generation = this.current;
    generation.leases += 1;
    let released = false;
    return {
      keys: generation.keys,
      release: () => {
        if (released) return;
        released = true;
        generation.leases -= 1;
        if (generation.retired && generation.leases === 0) wipe(generation.keys);
      },
    };
  }

  /** Makes `keys` the current ones (owned from now on); the previous ones are wiped once no lease holds them. After close(), wipes `keys` at once. */
  replace(keys: readonly Buffer[]): void {
    if (this.closed) {
      wipe(keys);
      return;
    }
    const previous = this.current;
    this.current = { keys, leases: 0, retired: false };
    previous.retired = true;
    if (previous.leases === 0) wipe(previous.keys);
  }

  /** Wipes the current keys once no lease holds them (at once if none does); later replace() calls wipe what they are given. */
  close(): void {
    this.closed = true;
    this.current.retired = true;
    if (this.current.leases === 0) wipe(this.current.keys);
  }
}

/** Overwrites every key with zeros. */
function wipe(keys: readonly Buffer[]): void {
  for (const key of keys) key.fill(0);
}
