// Owns --metrics for the command-line daemons: loading the exporter (and
// prom-client) only when asked for, and wording its start-up failures.

import type { MetricsServer, MetricsSource } from '../metrics.js';
import { SpipedError } from '../errors.js';
import { strerror } from './messages.js';

/** Starts the Prometheus exporter on `address` for `sources`; throws an Error whose message is the line to print ("Error binding metrics socket <address>: <strerror>"). */
export async function startExporter(address: string, sources: () => readonly MetricsSource[]): Promise<MetricsServer> {
  const { createMetricsRegistry, serveMetrics } = await import('../metrics.js');
  try {
    return await serveMetrics(createMetricsRegistry(sources), address);
  } catch (err) {
    const cause = err instanceof SpipedError && err.cause !== undefined ? err.cause : err;
    throw new Error(`Error binding metrics socket ${address}: ${strerror(cause)}`, { cause: err });
  }
}
