// Owns the Prometheus exporter (--metrics): a prom-client registry whose
// metrics are filled from the tunnels' stats() at scrape time (nothing is
// counted through prom-client on the connection or packet path), and the HTTP
// server that serves it at /metrics on a spiped-style address.

import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import { formatEndpoint, parseAddress, resolveAddress, type Endpoint } from './address.js';
import { CONNECTION_OUTCOMES } from './connection-log.js';
import { cryptoBackend } from './crypto/index.js';
import { SpipedError, asSpipedError } from './errors.js';
import { HANDSHAKE_FAILURE_REASONS, type TunnelStats } from './stats.js';

/** A tunnel as the exporter sees it: a name (the `tunnel` label) and its counters. */
export interface MetricsSource {
  name: string;
  stats: () => TunnelStats;
}

/** One metric family: its samples for one tunnel's stats (labels beside `tunnel`, value). */
interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  labelNames: readonly string[];
  samples: (stats: TunnelStats) => [labels: Record<string, string>, value: number][];
}

/** The per-tunnel metrics (see README "Metrics"). */
const FAMILIES: readonly Family[] = [
  {
    name: 'spiped_connections_total',
    help: 'Connections that have ended, by outcome',
    type: 'counter',
    labelNames: ['outcome'],
    samples: (stats) => CONNECTION_OUTCOMES.map((outcome) => [{ outcome }, stats.connections[outcome]]),
  },
  { name: 'spiped_connections_active', help: 'Connections being served', type: 'gauge', labelNames: [], samples: (stats) => [[{}, stats.active]] },
  { name: 'spiped_connections_queued', help: 'Connections held at the -n limit', type: 'gauge', labelNames: [], samples: (stats) => [[{}, stats.queued]] },
  {
    name: 'spiped_bytes_total',
    help: 'Plaintext bytes carried, toward the target (to_target) and back (from_target)',
    type: 'counter',
    labelNames: ['direction'],
    samples: (stats) => [
      [{ direction: 'to_target' }, stats.bytesToTarget],
      [{ direction: 'from_target' }, stats.bytesFromTarget],
    ],
  },
  {
    name: 'spiped_handshake_failures_total',
    help: 'Failed handshakes, by reason',
    type: 'counter',
    labelNames: ['reason'],
    samples: (stats) => HANDSHAKE_FAILURE_REASONS.map((reason) => [{ reason }, stats.handshakeFailures[reason]]),
  },
  {
    name: 'spiped_key_matches_total',
    help: 'Handshakes done with each key (key="1" is the first -k)',
    type: 'counter',
    labelNames: ['key'],
    samples: (stats) => stats.keyMatches.map((count, i) => [{ key: String(i + 1) }, count]),
  },
];

/** Builds a registry exposing `sources()` (read at every scrape); see README "Metrics" for the names. */
export function createMetricsRegistry(sources: () => readonly MetricsSource[]): Registry {
  const registry = new Registry();
  for (const family of FAMILIES) {
    const labelNames = ['tunnel', ...family.labelNames];
    const fill = (put: (labels: Record<string, string>, value: number) => void): void => {
      for (const source of sources()) {
        for (const [labels, value] of family.samples(source.stats())) put({ tunnel: source.name, ...labels }, value);
      }
    };
    if (family.type === 'counter') {
      new Counter({ name: family.name, help: family.help, labelNames, registers: [registry], collect() {
        this.reset();
        fill((labels, value) => this.inc(labels, value));
      } });
    } else {
      new Gauge({ name: family.name, help: family.help, labelNames, registers: [registry], collect() {
        this.reset();
        fill((labels, value) => this.set(labels, value));
      } });
    }
  }
  new Gauge({
    name: 'spiped_crypto_backend_info',
    help: 'The packet crypto backend in use (value 1)',
    labelNames: ['backend', 'aesni', 'shani', 'vaes'],
    registers: [registry],
    collect() {
      this.reset();
      const backend = cryptoBackend();
      this.set({ backend: backend.name, aesni: String(backend.aesni), shani: String(backend.shani), vaes: String(backend.vaes) }, 1);
    },
  });
  return registry;
}

/** A running exporter. */
export interface MetricsServer {
  address: () => Endpoint; // where it listens (the port actually bound, with port 0)
  close: () => Promise<void>;
}

/** Serves `registry` at GET /metrics on `address` (a spiped address: "[127.0.0.1]:9100", "host:port", "/unix/path"); rejects with EADDRESS when it cannot bind. */
export async function serveMetrics(registry: Registry, address: string): Promise<MetricsServer> {
  const [endpoint] = await resolveAddress(parseAddress(address));
  if (endpoint === undefined) throw new SpipedError('ERESOLVE', `Metrics address ${address} resolves to nothing`);
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(asSpipedError(err, 'EADDRESS', `Error binding metrics socket ${formatEndpoint(endpoint)}`)));
    if (endpoint.kind === 'unix') server.listen({ path: endpoint.path }, resolve);
    else server.listen({ host: endpoint.address, port: endpoint.port, ipv6Only: endpoint.family === 6 }, resolve);
  });
  server.on('error', () => {}); // after binding: a failed scrape connection is the scraper's business
  return {
    address: () => {
      const bound = server.address();
      if (bound === null || typeof bound === 'string') return endpoint;
      return { kind: 'inet', address: bound.address, family: bound.family === 'IPv6' ? 6 : 4, port: bound.port };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
