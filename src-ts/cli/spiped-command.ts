// Owns the spiped command: parsing its flags exactly as the reference does
// (same checks, messages and exit codes), then running the daemon on
// createTunnel(): detaching (daemon.ts), pidfile, loading the crypto backend
// before -u drops privileges, warnings (coalesced) to stderr or syslog, the
// SIGTERM drain, and the reference's SIGINT handling as PID 1.

import { unlinkSync } from 'node:fs';
import { DEFAULTS, MAX_TIMER_SECONDS, createTunnel, type Tunnel } from '../api.js';
import { formatConnectionRecord } from '../connection-log.js';
import type { MetricsServer } from '../metrics.js';
import { startExporter } from './exporter.js';
import { isProxyProtocolVersion, type ProxyProtocolVersion } from '../proxy-protocol.js';
import { forgetListenEnvironment, isSystemdAddress } from '../systemd.js';
import { MAX_SERVER_KEYS } from '../handshake.js';
import { warmUpWanted } from '../warm-up.js';
import {
  SyslogSender,
  detach,
  firstSigterm,
  notifyIfWanted,
  notifyParentReady,
  reloadLine,
  startTimeoutMs,
  switchIdentity,
  takeDaemonChildMarker,
  watchParent,
  writePidfile,
} from './daemon.js';
import { argumentError, getopt, optionSpecs, parseNonNegativeDouble, parseUnsigned, type ParseOutcome } from './getopt.js';
import { WarningCoalescer, addressProblem, errorText, fallbackNotice, startupFailureLines, warn } from './messages.js';
import { REFERENCE_VERSION, SPIPED_USAGE } from './usage.js';

const PROGRAM = 'spiped';

/** Everything a spiped command line asks for. */
export interface SpipedConfig {
  mode: 'encrypt' | 'decrypt'; // -e / -d
  source: string; // -s
  target: string; // -t
  keys: string[]; // -k (path or "-"); with -d, one or more (tried in turn against each client), else exactly one
  bind: string | undefined; // -b
  waitForDns: boolean; // -D
  foreground: boolean; // -F
  keepAlive: boolean; // false with -j
  fast: boolean; // -f
  requirePfs: boolean; // -g
  maxConnections: number; // -n (0 = unlimited)
  timeout: number; // -o, seconds
  pidfile: string; // -p, default "<source>.pid"
  resolveEvery: number | null; // -r seconds; null for -R
  syslog: boolean; // --syslog
  user: string | undefined; // -u
  reloadOnSighup: boolean; // --reload-on-sighup (ours): SIGHUP re-reads the keys and re-resolves the target
  logConnections: boolean; // --log-connections (ours): one line per ended connection, never coalesced
  metrics: string | undefined; // --metrics <address> (ours): Prometheus text at /metrics
  proxyProtocol: ProxyProtocolVersion | null; // --proxy-protocol v1|v2 (ours)
}

const SPIPED_OPTIONS = optionSpecs(['-b', '-k', '-n', '-o', '-p', '-r', '-s', '-t', '-u', '--metrics', '--proxy-protocol'], ['-d', '-D', '-e', '-f', '-F', '-g', '-j', '-R', '--syslog', '-v', '--reload-on-sighup', '--log-connections']);

/**
 * Reads a spiped command line (without the program name) exactly as the reference does, with
 * one extension: on a line that has -d, -k may be given more than once (up to MAX_SERVER_KEYS;
 * elsewhere a second -k is the reference's usage error).
 */
export function parseSpipedArgs(argv: readonly string[]): ParseOutcome<SpipedConfig> {
  const usage = (before = ''): ParseOutcome<SpipedConfig> => ({ ok: false, exitCode: 1, stderr: before + SPIPED_USAGE });
  const values = new Map<string, string>();
  const keys: string[] = [];
  let n: bigint | undefined;
  let o: number | undefined;
  let r: number | undefined;
  const { events, operands } = getopt(argv, SPIPED_OPTIONS);
  const decrypting = events.some((event) => event.kind === 'option' && event.name === '-d');
  for (const event of events) {
    if (event.kind === 'illegal') return usage(`${PROGRAM}: illegal option -- ${event.name}\n`);
    if (event.kind === 'missing') return usage(`${PROGRAM}: Missing argument to ${event.name}\n`);
    const { name, value } = event;
    if (name === '-v') return { ok: false, exitCode: 0, stderr: `${PROGRAM} ${REFERENCE_VERSION}\n` };
    if (name === '-k') {
      if (keys.length > 0 && !decrypting) return usage();
      if (keys.length === MAX_SERVER_KEYS) return usage(`${PROGRAM}: At most ${MAX_SERVER_KEYS} key files (-k)\n`);
      keys.push(value);
    }
    if ((values.has(name) && name !== '-k') || ((name === '-d' || name === '-e') && (values.has('-d') || values.has('-e')))) return usage();
    values.set(name, value);
    if (name === '-n') {
      const parsed = parseUnsigned(value);
      if (!parsed.ok) return argumentError(PROGRAM, name, value, parsed.errno);
      n = parsed.value;
    } else if (name === '-o' || name === '-r') {
      const parsed = parseNonNegativeDouble(value);
      if (!parsed.ok) return argumentError(PROGRAM, name, value, parsed.errno);
      if (name === '-o') o = parsed.value;
      else r = parsed.value;
    }
  }
  if (operands.length !== 0) return usage();
  // Defaults as the reference sets them: 0 (or -0) means "the default".
  const timeout = o === undefined || o === 0 ? DEFAULTS.timeout : o;
  const rtime = r === undefined || r === 0 ? DEFAULTS.resolveEvery : r;
  const source = values.get('-s');
  const target = values.get('-t');
  if (!values.has('-d') && !values.has('-e')) return usage();
  if (values.has('-f') && values.has('-g')) return usage();
  if (keys.length === 0) return usage();
  const proxyProtocol = values.get('--proxy-protocol') ?? null;
  if (proxyProtocol !== null && !isProxyProtocolVersion(proxyProtocol)) {
    return { ok: false, exitCode: 1, stderr: `${PROGRAM}: --proxy-protocol takes v1 or v2, not ${JSON.stringify(proxyProtocol)}\n` };
  }
  if (keys.filter((key) => key === '-').length > 1) return usage(`${PROGRAM}: Standard input (-k -) can be read only once\n`);
  if (!(timeout > 0)) return usage();
  if (rtime !== DEFAULTS.resolveEvery && values.has('-R')) return usage();
  if (source === undefined || target === undefined) return usage();
  return {
    ok: true,
    config: {
      mode: values.has('-e') ? 'encrypt' : 'decrypt',
      source,
      target,
      keys,
      bind: values.get('-b'),
      waitForDns: values.has('-D'),
      foreground: values.has('-F'),
      keepAlive: !values.has('-j'),
      fast: values.has('-f'),
      requirePfs: values.has('-g'),
      maxConnections: n === undefined ? DEFAULTS.maxConnections : n === 0n || n > BigInt(Number.MAX_SAFE_INTEGER) ? 0 : Number(n),
      timeout: Math.min(timeout, MAX_TIMER_SECONDS),
      pidfile: values.get('-p') ?? `${source}.pid`,
      resolveEvery: values.has('-R') || !(rtime < MAX_TIMER_SECONDS) ? null : rtime,
      syslog: values.has('--syslog'),
      user: values.get('-u'),
      reloadOnSighup: values.has('--reload-on-sighup'),
      logConnections: values.has('--log-connections'),
      metrics: values.get('--metrics'),
      proxyProtocol,
    },
  };
}

/** Runs spiped with `argv` (without the program name); resolves to the exit code once it is over. */
export async function runSpiped(argv: readonly string[]): Promise<number> {
  const parsed = parseSpipedArgs(argv);
  if (!parsed.ok) {
    process.stderr.write(parsed.stderr);
    return parsed.exitCode;
  }
  const config = parsed.config;
  const malformed =
    (config.bind === undefined ? null : addressProblem(config.bind, true)) ??
    (isSystemdAddress(config.source) ? null : addressProblem(config.source)) ??
    addressProblem(config.target) ??
    (config.metrics === undefined ? null : addressProblem(config.metrics)?.map((line) => line.replace('Error resolving socket address', 'Error resolving --metrics address')) ?? null);
  if (malformed !== null) {
    warn(PROGRAM, malformed);
    return 1;
  }
  if (isSystemdAddress(config.source) && !config.foreground) {
    warn(PROGRAM, [`-s ${config.source} needs -F (under systemd the daemon stays in the foreground)`]);
    return 1;
  }
  const isDaemonChild = takeDaemonChildMarker();
  if (isDaemonChild) watchParent(startTimeoutMs());
  if (process.pid === 1) {
    // As init (in a container) no signal has a default action: exit at once on SIGINT, as the reference does.
    warn(PROGRAM, ['WARNING: Applying workaround for Docker signal-handling bug']);
    process.on('SIGINT', () => process.exit(0));
  }
  if (config.foreground || isDaemonChild) return serve(config, isDaemonChild);
  // -k -: the daemon inherits standard input and hashes the key as it streams in.
  return detach(PROGRAM, config.keys.includes('-'), startTimeoutMs(), config.pidfile);
}

/** The daemon itself (in the foreground, or as the detached child); resolves to the exit code. */
async function serve(config: SpipedConfig, detached: boolean): Promise<number> {
  let serving = false;
  const sigterm = firstSigterm(() => serving);
  const syslog = config.syslog ? new SyslogSender(PROGRAM) : null; // starts logger(1) at its first line
  let toSyslog = false; // once detached
  const writeLine = (line: string): void => {
    if (toSyslog && syslog !== null) syslog.send(line);
    else warn(PROGRAM, [line]);
  };
  const warnings = new WarningCoalescer(writeLine); // connection log lines bypass it: each one is written
  const report = (lines: readonly string[]): void => {
    for (const line of lines) warnings.report(line);
  };
  // Until the tunnel is up, a SIGHUP under --reload-on-sighup is ignored rather than fatal.
  const onEarlySighup = (): void => {};
  if (config.reloadOnSighup) process.on('SIGHUP', onEarlySighup);
  let exporter: MetricsServer | null = null;
  try {
    const daemonize = (): void => {
      writePidfile(config.pidfile);
    };
    const released = (): void => {
      notifyParentReady();
      toSyslog = config.syslog;
    };
    // The crypto backend is loaded (and its fallback notice printed by the daemon itself) before -u can drop the rights to read it.
    const notice = fallbackNotice();
    if (notice !== null) report([notice]);
    if (detached && config.waitForDns) {
      // -D: the reference daemonizes before resolving, then waits for DNS in the background.
      try {
        daemonize();
      } catch (err) {
        report([errorText(err)]);
        return 1;
      }
      released();
    }
    let tunnel: Tunnel;
    try {
      tunnel = await createTunnel({
        mode: config.mode,
        source: config.source,
        target: config.target,
        key: config.keys,
        bind: config.bind,
        fast: config.fast,
        requirePfs: config.requirePfs,
        timeout: config.timeout,
        maxConnections: config.maxConnections,
        keepAlive: config.keepAlive,
        resolveEvery: config.resolveEvery,
        waitForDns: config.waitForDns,
        warmUp: warmUpWanted(),
        proxyProtocol: config.proxyProtocol,
      });
    } catch (err) {
      report(startupFailureLines(err, [config.bind ?? '', config.source, config.target].filter((text) => text !== '')));
      return 1;
    }
    tunnel.on('warning', (message) => report([message]));
    if (config.reloadOnSighup) {
      process.on('SIGHUP', () => void tunnel.reload().then((outcome) => report([reloadLine(outcome)])));
      process.off('SIGHUP', onEarlySighup);
    }
    tunnel.on('connectionError', () => {}); // the reference says nothing about a failed connection
    if (config.logConnections) tunnel.on('connection', (record) => writeLine(formatConnectionRecord(record)));
    try {
      if (config.metrics !== undefined) exporter = await startExporter(config.metrics, () => [{ name: config.source, stats: () => tunnel.stats() }]);
      if (detached && !config.waitForDns) daemonize();
      if (config.user !== undefined) report(switchIdentity(config.user));
    } catch (err) {
      report(errorText(err).split('\n'));
      if (detached) removePidfile(config.pidfile);
      return 1;
    }
    if (detached && !config.waitForDns) released();
    forgetListenEnvironment();
    void notifyIfWanted('READY=1', report);
    serving = true;
    await sigterm;
    void notifyIfWanted('STOPPING=1', report);
    await tunnel.close(); // stops accepting, resolves once the last connection has ended
    return 0;
  } finally {
    await exporter?.close();
    warnings.flush(); // the counts of repeats still pending
    syslog?.close();
  }
}

/** Best-effort removal of a pidfile this run wrote before failing. */
function removePidfile(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone or not ours to remove any more (after -u)
  }
}
