// Owns `spiped-native run <config file>`: many tunnels in one process. Reads
// and checks the whole file first (run-config.ts), then starts every tunnel
// (all or none: if one cannot start, the started ones are closed), one metrics
// exporter for all, -u once all are bound; SIGHUP reloads every tunnel, SIGTERM
// drains them all. Stays in the foreground (run it under systemd or a
// supervisor); warnings go to stderr, coalesced, prefixed by the tunnel's name.

import { readFileSync } from 'node:fs';
import { createTunnel, type Tunnel } from '../api.js';
import { formatConnectionRecord } from '../connection-log.js';
import { forgetListenEnvironment } from '../systemd.js';
import { warmUpWanted } from '../warm-up.js';
import { firstSigterm, notifyIfWanted, reloadLine, switchIdentity } from './daemon.js';
import { startExporter } from './exporter.js';
import { WarningCoalescer, errorText, fallbackNotice, startupFailureLines, strerror, warn } from './messages.js';
import { parseRunConfig, type RunTunnel } from './run-config.js';

const PROGRAM = 'spiped-native';

/** The usage line of `run`. */
export const RUN_USAGE = 'usage: spiped-native run <config file>\n';

/** Runs `spiped-native run` with `args` (after "run"); resolves to the exit code once every tunnel has drained (or start-up failed). */
export async function runTunnels(args: readonly string[]): Promise<number> {
  if (args.length !== 1 || args[0]!.startsWith('-')) {
    process.stderr.write(RUN_USAGE);
    return 1;
  }
  const file = args[0]!;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    warn(PROGRAM, [`Cannot read ${file}: ${strerror(err)}`]);
    return 1;
  }
  const parsed = parseRunConfig(text);
  if (!parsed.ok) {
    warn(PROGRAM, parsed.problems.map((problem) => `${file}: ${problem}`));
    return 1;
  }
  const config = parsed.config;
  const warnings = new WarningCoalescer((line) => warn(PROGRAM, [line]));
  const report = (lines: readonly string[]): void => {
    for (const line of lines) warnings.report(line);
  };
  let serving = false;
  const sigterm = firstSigterm(() => serving);
  const notice = fallbackNotice();
  if (notice !== null) report([notice]);
  // Until every tunnel is up, SIGHUP is ignored rather than fatal.
  const onEarlySighup = (): void => {};
  process.on('SIGHUP', onEarlySighup);
  const started: { tunnel: RunTunnel; running: Tunnel }[] = [];
  const closeAll = async (): Promise<void> => void (await Promise.all(started.map(({ running }) => running.close())));
  for (const tunnel of config.tunnels) {
    try {
      started.push({ tunnel, running: await createTunnel({ ...tunnel.options, warmUp: warmUpWanted() }) });
    } catch (err) {
      const addresses = [tunnel.options.bind ?? '', tunnel.options.source, tunnel.options.target].filter((address) => address !== '');
      warn(PROGRAM, startupFailureLines(err, addresses).map((line) => `tunnel "${tunnel.name}": ${line}`));
      await closeAll();
      return 1;
    }
  }
  for (const { tunnel, running } of started) {
    running.on('warning', (message) => report([`${tunnel.name}: ${message}`]));
    running.on('connectionError', () => {});
    if (tunnel.logConnections) running.on('connection', (record) => warn(PROGRAM, [formatConnectionRecord(record, tunnel.name)]));
  }
  let exporter: Awaited<ReturnType<typeof startExporter>> | null = null;
  try {
    if (config.metrics !== undefined) {
      exporter = await startExporter(config.metrics, () => started.map(({ tunnel, running }) => ({ name: tunnel.name, stats: () => running.stats() })));
    }
    if (config.user !== undefined) report(switchIdentity(config.user));
  } catch (err) {
    report(errorText(err).split('\n'));
    await Promise.all([closeAll(), exporter?.close()]);
    return 1;
  }
  process.on('SIGHUP', () => {
    for (const { tunnel, running } of started) void running.reload().then((outcome) => report([`${tunnel.name}: ${reloadLine(outcome)}`]));
  });
  process.off('SIGHUP', onEarlySighup);
  forgetListenEnvironment();
  void notifyIfWanted('READY=1', report);
  serving = true;
  await sigterm;
  void notifyIfWanted('STOPPING=1', report);
  await closeAll(); // every tunnel stops accepting; resolves once the last connection has ended
  await exporter?.close();
  warnings.flush();
  return 0;
}
