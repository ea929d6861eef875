// Owns the configuration file of `spiped-native run`: TOML (smol-toml), one
// [tunnel.<name>] table per tunnel with the daemon's options under their long
// names, a few process-wide keys at the top; and checking all of it (every
// field of every tunnel, key files readable, no source twice) before anything
// is bound, each problem named by tunnel and field.

import { accessSync, constants, statSync } from 'node:fs';
import { parse } from 'smol-toml';
import { parseAddress } from '../address.js';
import { DEFAULTS, MAX_TIMER_SECONDS, type TunnelOptions } from '../api.js';
import { MAX_SERVER_KEYS } from '../handshake.js';
import { isProxyProtocolVersion } from '../proxy-protocol.js';
import { isSystemdAddress } from '../systemd.js';
import { errorText, strerror } from './messages.js';

/** One tunnel of the file. */
export interface RunTunnel {
  name: string;
  options: TunnelOptions;
  logConnections: boolean;
}

/** The whole file, checked. */
export interface RunConfig {
  metrics: string | undefined; // one exporter for every tunnel (the `tunnel` label is the name)
  user: string | undefined; // -u for the whole process, after every tunnel is bound
  tunnels: RunTunnel[];
}

/** The fields a [tunnel.<name>] table may hold (the long names of the daemon's flags), and the top-level ones. */
const TUNNEL_FIELDS = [
  'mode',
  'source',
  'target',
  'key',
  'bind',
  'fast',
  'require-pfs',
  'max-connections',
  'timeout',
  'resolve-every',
  'keep-alive',
  'wait-for-dns',
  'log-connections',
  'proxy-protocol',
] as const;
const TOP_FIELDS = ['metrics', 'user', 'tunnel'] as const;

/** A plain table of the parsed TOML. */
type Table = Record<string, unknown>;

/** True for a TOML table (not an array, a date or a scalar). */
function isTable(value: unknown): value is Table {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** The checks of one field; each throws an Error with the problem. */
const expect = {
  string(value: unknown): string {
    if (typeof value !== 'string' || value === '') throw new Error(`must be a non-empty string, not ${show(value)}`);
    return value;
  },
  boolean(value: unknown): boolean {
    if (typeof value !== 'boolean') throw new Error(`must be true or false, not ${show(value)}`);
    return value;
  },
  address(value: unknown, portOptional = false): string {
    const text = expect.string(value);
    try {
      parseAddress(text, portOptional);
    } catch (err) {
      throw new Error(errorText(err));
    }
    return text;
  },
  number(value: unknown, valid: (n: number) => boolean, what: string): number {
    if (typeof value !== 'number' || !valid(value)) throw new Error(`must be ${what}, not ${show(value)}`);
    return value;
  },
};

/** A value as TOML would write it, for error messages. */
function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : Array.isArray(value) ? 'an array' : isTable(value) ? 'a table' : String(value);
}

/** Checks that `path` is a readable key file; throws with the reason. */
function checkKeyFile(path: unknown): string {
  const file = expect.string(path);
  if (file === '-') throw new Error('standard input ("-") cannot be a key file here');
  try {
    accessSync(file, constants.R_OK);
    if (statSync(file).isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
  } catch (err) {
    throw new Error(`${file}: ${strerror(err)}`);
  }
  return file;
}

/** Checks one [tunnel.<name>] table; pushes each problem as "<field>: <what is wrong>". */
function checkTunnel(table: Table, problems: string[]): { options: TunnelOptions; logConnections: boolean } | null {
  const field = <T>(name: string, check: (value: unknown) => T): T | undefined => {
    if (!(name in table)) return undefined;
    try {
      return check(table[name]);
    } catch (err) {
      problems.push(`${name}: ${errorText(err)}`);
      return undefined;
    }
  };
  for (const name of Object.keys(table)) {
    if (!(TUNNEL_FIELDS as readonly string[]).includes(name)) problems.push(`${name}: unknown field (known: ${TUNNEL_FIELDS.join(', ')})`);
  }
  for (const name of ['mode', 'source', 'target', 'key']) if (!(name in table)) problems.push(`${name}: missing`);
  const mode = field('mode', (value) => {
    if (value !== 'encrypt' && value !== 'decrypt') throw new Error(`must be "encrypt" or "decrypt", not ${show(value)}`);
    return value;
  });
  const source = field('source', (value) => (typeof value === 'string' && isSystemdAddress(value) ? value : expect.address(value)));
  const target = field('target', (value) => expect.address(value));
  const key = field('key', (value) => {
    const list = Array.isArray(value) ? value : [value];
    if (list.length === 0 || list.length > MAX_SERVER_KEYS) throw new Error(`must list 1 to ${MAX_SERVER_KEYS} key files`);
    if (list.length > 1 && table['mode'] !== 'decrypt') throw new Error('only a decrypting tunnel takes several key files');
    return list.map(checkKeyFile);
  });
  const bind = field('bind', (value) => expect.address(value, true));
  const fast = field('fast', expect.boolean);
  const requirePfs = field('require-pfs', expect.boolean);
  if (fast === true && requirePfs === true) problems.push('fast, require-pfs: cannot both be true');
  const maxConnections = field('max-connections', (value) => expect.number(value, (n) => Number.isInteger(n) && n >= 0, 'a whole number >= 0 (0 = unlimited)'));
  const timeout = field('timeout', (value) => expect.number(value, (n) => n > 0 && n <= MAX_TIMER_SECONDS, `a number of seconds in (0, ${MAX_TIMER_SECONDS}]`));
  const resolveEvery = field('resolve-every', (value) =>
    expect.number(value, (n) => n >= 0 && n <= MAX_TIMER_SECONDS, `a number of seconds in [0, ${MAX_TIMER_SECONDS}] (0 = never)`),
  );
  const keepAlive = field('keep-alive', expect.boolean);
  const waitForDns = field('wait-for-dns', expect.boolean);
  const logConnections = field('log-connections', expect.boolean);
  const proxyProtocol = field('proxy-protocol', (value) => {
    if (!isProxyProtocolVersion(value)) throw new Error(`must be "v1" or "v2", not ${show(value)}`);
    return value;
  });
  if (mode === undefined || source === undefined || target === undefined || key === undefined) return null;
  return {
    options: {
      mode,
      source,
      target,
      key,
      bind,
      fast,
      requirePfs,
      maxConnections: maxConnections ?? DEFAULTS.maxConnections,
      timeout,
      resolveEvery: resolveEvery ?? DEFAULTS.resolveEvery,
      keepAlive,
      waitForDns,
      proxyProtocol: proxyProtocol ?? null,
    },
    logConnections: logConnections ?? false,
  };
}

/** Parses and checks the TOML `text`; returns the config, or every problem found as "tunnel "<name>": <field>: <what>" lines. */
export function parseRunConfig(text: string): { ok: true; config: RunConfig } | { ok: false; problems: string[] } {
  let document: Table;
  try {
    document = parse(text) as Table;
  } catch (err) {
    return { ok: false, problems: [errorText(err).split('\n')[0]!.concat(lineOf(err))] };
  }
  const problems: string[] = [];
  for (const name of Object.keys(document)) {
    if (!(TOP_FIELDS as readonly string[]).includes(name)) problems.push(`${name}: unknown top-level field (known: ${TOP_FIELDS.join(', ')})`);
  }
  const top = (name: string, check: (value: unknown) => string): string | undefined => {
    if (!(name in document)) return undefined;
    try {
      return check(document[name]);
    } catch (err) {
      problems.push(`${name}: ${errorText(err)}`);
      return undefined;
    }
  };
  const metrics = top('metrics', (value) => expect.address(value));
  const user = top('user', expect.string);
  const tables = document['tunnel'];
  const tunnels: RunTunnel[] = [];
  if (!isTable(tables) || Object.keys(tables).length === 0) {
    problems.push('tunnel: no tunnels (add a [tunnel.<name>] table for each)');
  } else {
    const sources = new Map<string, string>();
    for (const [name, table] of Object.entries(tables)) {
      const own: string[] = [];
      const checked = isTable(table) ? checkTunnel(table, own) : (own.push(`must be a table ([tunnel.${name}]), not ${show(table)}`), null);
      const source = isTable(table) && typeof table['source'] === 'string' ? table['source'] : undefined;
      const other = source === undefined ? undefined : sources.get(source);
      if (other !== undefined) own.push(`source: ${source} is tunnel "${other}"'s source too`);
      else if (source !== undefined) sources.set(source, name);
      problems.push(...own.map((problem) => `tunnel "${name}": ${problem}`));
      if (checked !== null && own.length === 0) tunnels.push({ name, ...checked });
    }
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, config: { metrics, user, tunnels } };
}

/** " (line L, column C)" for a TOML parse error that says where. */
function lineOf(err: unknown): string {
  const { line, column } = (typeof err === 'object' && err !== null ? err : {}) as { line?: unknown; column?: unknown };
  return typeof line === 'number' && typeof column === 'number' ? ` (line ${line}, column ${column})` : '';
}
