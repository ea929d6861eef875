// Owns socket addresses in spiped's formats: parsing `/unix/path`, `host:port`,
// `[ipv4]:port` and `[ipv6]:port`, and resolving them to connectable endpoints
// without blocking the event loop (dns.lookup runs on libuv's thread pool).

import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { SpipedError } from './errors.js';

/** A parsed spiped socket address: a Unix socket path, or a host (name or literal IP) and port. */
export type SocketAddress =
  | { kind: 'unix'; path: string }
  | { kind: 'inet'; host: string; port: number | undefined; literal: boolean };

/** One concrete endpoint to connect to or listen on. */
export type Endpoint =
  | { kind: 'unix'; path: string }
  | { kind: 'inet'; address: string; family: 4 | 6; port: number };

/** Parses a spiped address; the port may be left out only when `portOptional` (for -b). */
export function parseAddress(text: string, portOptional = false): SocketAddress {
  const bad = (why: string): SpipedError =>
    new SpipedError('EADDRESS', `Invalid socket address ${JSON.stringify(text)}: ${why}`);
  if (text.startsWith('/')) return { kind: 'unix', path: text };
  let host: string;
  let portText: string | undefined;
  let literal = false;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw bad('missing "]"');
    host = text.slice(1, close);
    literal = true;
    if (isIP(host) === 0) throw bad(`"${host}" is not an IPv4 or IPv6 address`);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw bad('expected ":port" after "]"');
      portText = rest.slice(1);
    }
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) {
      host = text;
    } else {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    }
    if (host.includes(':')) throw bad('IPv6 addresses must be written as [addr]:port');
    if (host === '') throw bad('empty host name');
  }
  if (portText === undefined) {
    if (!portOptional) throw bad('missing ":port" (Unix socket paths must be absolute)');
    return { kind: 'inet', host, port: undefined, literal };
  }
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) throw bad(`bad port "${portText}"`);
  return { kind: 'inet', host, port: Number(portText), literal };
}

/** Formats an address back into spiped's notation. */
export function formatAddress(address: SocketAddress): string {
  if (address.kind === 'unix') return address.path;
  const host = address.literal ? `[${address.host}]` : address.host;
  return address.port === undefined ? host : `${host}:${address.port}`;
}

/** Formats an endpoint for messages, e.g. `[::1]:8025` or `/tmp/sock`. */
export function formatEndpoint(endpoint: Endpoint): string {
  return endpoint.kind === 'unix' ? endpoint.path : `[${endpoint.address}]:${endpoint.port}`;
}

/** Resolves `address` to its endpoints (in resolver order); throws ERESOLVE when there are none. */
export async function resolveAddress(address: SocketAddress): Promise<Endpoint[]> {
  if (address.kind === 'unix') return [{ kind: 'unix', path: address.path }];
  const port = address.port ?? 0;
  if (address.literal) {
    return [{ kind: 'inet', address: address.host, family: isIP(address.host) === 6 ? 6 : 4, port }];
  }
  let found: { address: string; family: number }[];
  try {
    found = await lookup(address.host, { all: true, verbatim: true });
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new SpipedError('ERESOLVE', `Error resolving socket address: ${formatAddress(address)} (${detail})`, {
      cause: err,
    });
  }
  if (found.length === 0) {
    throw new SpipedError('ERESOLVE', `Error resolving socket address: ${formatAddress(address)}`);
  }
  return found.map((entry) => ({
    kind: 'inet' as const,
    address: entry.address,
    family: entry.family === 6 ? (6 as const) : (4 as const),
    port,
  }));
}
