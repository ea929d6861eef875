// Owns the PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and
// 2) that --proxy-protocol puts at the start of the plaintext stream: it
// describes an accepted connection (source = the peer, destination = the
// address it connected to) as TCP4, TCP6, or UNKNOWN / UNSPEC for a Unix socket.

import { isIPv4, isIPv6 } from 'node:net';
import type { SocketEnds } from './channel.js';

/** The PROXY protocol versions. */
export type ProxyProtocolVersion = 'v1' | 'v2';

/** The 12 bytes every version 2 header starts with. */
export const PROXY_V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** True when `value` names a PROXY protocol version. */
export function isProxyProtocolVersion(value: unknown): value is ProxyProtocolVersion {
  return value === 'v1' || value === 'v2';
}

/** The two ends of a TCP connection, both of one family (an IPv4 end beside an IPv6 one is written IPv4-mapped). */
interface Ends {
  family: 4 | 6;
  source: string;
  sourcePort: number;
  destination: string;
  destinationPort: number;
}

/** The address with any IPv4-mapped IPv6 prefix removed. */
function unmapped(address: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address;
}

/** The ends of an accepted TCP connection (`socket`: a net.Socket or a Channel's ends()), or null for a Unix socket or a closed one. */
function endsOf(socket: SocketEnds): Ends | null {
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined) return null;
  const source = unmapped(remoteAddress);
  const destination = unmapped(localAddress);
  if (isIPv4(source) && isIPv4(destination)) return { family: 4, source, sourcePort: remotePort, destination, destinationPort: localPort };
  const asV6 = (address: string): string => (isIPv4(address) ? `::ffff:${address}` : address);
  if (!isIPv6(asV6(source)) || !isIPv6(asV6(destination))) return null;
  return { family: 6, source: asV6(source), sourcePort: remotePort, destination: asV6(destination), destinationPort: localPort };
}

/** The 16 bytes of an IPv6 address. */
function ipv6Bytes(address: string): Buffer {
  let text = address;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  const bytes = Buffer.alloc(16);
  groups.forEach((group, i) => bytes.writeUInt16BE(Number.parseInt(group, 16), i * 2));
  return bytes;
}

/** The header describing `socket` (see the module comment) in `version`. */
export function proxyHeader(version: ProxyProtocolVersion, socket: SocketEnds): Buffer {
  const ends = endsOf(socket);
  if (version === 'v1') {
    if (ends === null) return Buffer.from('PROXY UNKNOWN\r\n');
    return Buffer.from(`PROXY TCP${ends.family} ${ends.source} ${ends.destination} ${ends.sourcePort} ${ends.destinationPort}\r\n`);
  }
  // Version 2: signature, version 2 + PROXY command, family/transport, length, addresses, ports.
  if (ends === null) return Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x21, 0x00, 0x00, 0x00])]);
  const addresses =
    ends.family === 4
      ? Buffer.concat([Buffer.from(ends.source.split('.').map(Number)), Buffer.from(ends.destination.split('.').map(Number))])
      : Buffer.concat([ipv6Bytes(ends.source), ipv6Bytes(ends.destination)]);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(ends.sourcePort, 0);
  ports.writeUInt16BE(ends.destinationPort, 2);
  const head = Buffer.from([0x21, ends.family === 4 ? 0x11 : 0x21, 0, 0]);
  head.writeUInt16BE(addresses.length + ports.length, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, head, addresses, ports]);
}
