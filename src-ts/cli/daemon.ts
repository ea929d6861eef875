// Owns what makes spiped a daemon: detaching (the parent re-runs its own
// command line as a detached child, in a new session, and waits a bounded time
// until the child is listening), the pidfile, switching user and group after
// binding (-u), sending warnings to the system log (--syslog, through one
// long-lived logger(1) fed line by line), and the signals' life cycle shared by
// spiped and `spiped-native run` (the first SIGTERM, reload lines, systemd
// notifications).

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import type { ReloadOutcome } from '../dispatcher.js';
import { notificationsWanted, notifySystemd } from '../systemd.js';
import { strerror } from './messages.js';

/** Environment variable marking the detached child (removed as soon as the child reads it). */
const CHILD_MARKER = 'SPIPED_NATIVE_DAEMON_CHILD';
/** The message the child sends its parent over IPC once it is ready. */
const READY = 'ready';

/** True in the detached child that `detach()` started; removes the marker so it is not inherited further. */
export function takeDaemonChildMarker(): boolean {
  const isChild = process.env[CHILD_MARKER] === '1';
  delete process.env[CHILD_MARKER];
  return isChild;
}

/** How long the parent waits for the detached daemon by default (SPIPED_NATIVE_START_TIMEOUT overrides, in seconds). */
export const DEFAULT_START_TIMEOUT_SECONDS = 30;

/** The longest delay a Node timer takes (2^31-1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The wait for the detached daemon, in ms: SPIPED_NATIVE_START_TIMEOUT seconds when set to a positive number (at most about 24.8 days, a timer's limit), else the default. */
export function startTimeoutMs(): number {
  const seconds = Number(process.env['SPIPED_NATIVE_START_TIMEOUT']);
  return Math.min((Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_START_TIMEOUT_SECONDS) * 1000, MAX_TIMER_MS);
}

/**
 * Parent side of detaching: re-runs this process detached (same node, script and arguments),
 * with stdout/stderr inherited (as the reference keeps them) and standard input too when
 * `inheritStdin` (-k -: the daemon itself hashes the key as it streams in). Resolves to 0
 * once the child is ready, else to its failure code; if it is not ready within `timeoutMs`,
 * kills it, removes the pidfile it may have written, and resolves to 1 with a message.
 */
export function detach(program: string, inheritStdin: boolean, timeoutMs: number, pidfile: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      detached: true,
      env: { ...process.env, [CHILD_MARKER]: '1' },
      stdio: [inheritStdin ? 'inherit' : 'ignore', 'inherit', 'inherit', 'ipc'],
    });
    let settled = false;
    const settle = (code: number): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.connected) child.disconnect();
      child.unref();
      resolve(code);
    };
    const timer = setTimeout(() => {
      process.stderr.write(`${program}: The daemon was not ready within ${timeoutMs / 1000} seconds; stopped it\n`);
      child.kill('SIGKILL');
      removeOwnPidfile(pidfile, child.pid);
      settle(1);
    }, timeoutMs);
    child.on('message', (message) => {
      if (message === READY) settle(0);
    });
    child.on('exit', (code) => settle(code === null || code === 0 ? 1 : code));
    child.on('error', (err) => {
      process.stderr.write(`${program}: Failed to daemonize: ${strerror(err)}\n`);
      settle(1);
    });
  });
}

/** Removes `path` if it holds `pid` (a pidfile a killed child wrote); best effort. */
function removeOwnPidfile(path: string, pid: number | undefined): void {
  try {
    if (pid !== undefined && readFileSync(path, 'utf8') === String(pid)) unlinkSync(path);
  } catch {
    // not written, or not ours
  }
}

/** True once notifyParentReady() ran in this (child) process. */
let readyNotified = false;

/**
 * Child side, from the start: ends this process (SIGKILL) if the waiting parent goes away
 * (Ctrl-C, a kill) or if it is not ready within `timeoutMs`, so that a parent that gave up
 * never leaves a daemon behind; both stop once notifyParentReady() ran.
 */
export function watchParent(timeoutMs: number): void {
  // SIGKILL rather than exit(): exit() waits for libuv's threads, and one may be blocked for
  // ever (opening a FIFO key file nobody writes); nothing is listening yet to clean up.
  const abandon = (): void => void process.kill(process.pid, 'SIGKILL');
  const timer = setTimeout(abandon, timeoutMs);
  timer.unref();
  if (!process.connected) abandon(); // gone before this process got this far
  process.once('disconnect', () => {
    if (!readyNotified) abandon();
  });
}

/** Child side: tells the waiting parent that the daemon is up, and drops the IPC channel. */
export function notifyParentReady(): void {
  readyNotified = true;
  if (process.send === undefined || !process.connected) return; // the parent is gone: nobody to tell
  process.send(READY, () => {
    if (process.connected) process.disconnect();
  });
}

/** Writes the daemon's pid to `path` (like the reference: the bare number, no newline); throws with the message to print. */
export function writePidfile(path: string): void {
  try {
    writeFileSync(path, String(process.pid));
  } catch (err) {
    throw new Error(`Failed to daemonize: ${strerror(err)}`, { cause: err });
  }
}

/** A user or group for process.setuid/setgid: a number when given as digits, else the name. */
function credential(name: string): string | number {
  return /^[0-9]+$/.test(name) ? Number(name) : name;
}

/**
 * -u: switches to `spec` = "user", ":group" or "user:group" (as the reference: supplementary
 * groups are left, the group is set before the user, a bare user keeps the current group).
 * Returns warnings to print; throws an Error whose message lines the reference would print.
 */
export function switchIdentity(spec: string): string[] {
  if (spec === '') throw new Error(`Need to specify user and/or group: ""\nFailed to drop privileges`);
  const colon = spec.indexOf(':');
  const user = colon < 0 ? spec : spec.slice(0, colon);
  const group = colon < 0 ? '' : spec.slice(colon + 1);
  if (colon >= 0 && group === '' && user !== '') throw new Error(`Empty group name: "${spec}"\nFailed to drop privileges`);
  if (user === '' && group === '') return [];
  if (process.setgroups === undefined || process.setgid === undefined || process.setuid === undefined) {
    throw new Error('Failed to drop privileges: not supported on this platform');
  }
  const warnings: string[] = [];
  try {
    process.setgroups([]);
  } catch {
    warnings.push('Warning: Failed to leave supplementary groups');
  }
  const attempt = (change: () => void, unknown: string): void => {
    try {
      change();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'ERR_UNKNOWN_CREDENTIAL') throw new Error(`${unknown}\nFailed to drop privileges`);
      throw new Error(`Failed to drop privileges: ${strerror(err)}`);
    }
  };
  if (group !== '') attempt(() => process.setgid!(credential(group)), `No such group: ${group}`);
  if (user !== '') attempt(() => process.setuid!(credential(user)), `No such user: ${user}`);
  return warnings;
}

/** Bytes of warnings queued for logger(1) beyond which further lines are dropped. */
const MAX_LOGGER_BACKLOG = 64 * 1024;

/** Restarts of logger(1) allowed per minute before --syslog gives up for that minute (a logger that cannot start must not become a fork loop). */
const MAX_LOGGER_STARTS_PER_MINUTE = 5;

/**
 * --syslog: one long-lived logger(1) child per daemon, fed one warning per line on its
 * standard input (never a process per warning), tagged like the reference
 * ("<program>[<pid>]", priority daemon.warning). A logger that dies is started again on
 * the next warning, at most MAX_LOGGER_STARTS_PER_MINUTE times a minute; lines that find
 * no logger go nowhere, as syslog(3) without /dev/log would. Never throws.
 */
export class SyslogSender {
  private readonly tag: string;
  private child: ChildProcess | null = null;
  private starts: number[] = [];

  /** Logs as `tag` (the program name). */
  constructor(tag: string) {
    this.tag = tag;
  }

  /** Hands `line` to the system log (newlines inside it become spaces); dropped while logger has MAX_LOGGER_BACKLOG bytes unread (a stalled logger must not grow the daemon). */
  send(line: string): void {
    const logger = this.child ?? this.start();
    const input = logger?.stdin;
    if (input === null || input === undefined || input.writableLength > MAX_LOGGER_BACKLOG) return;
    input.write(`${line.replace(/[\r\n]+/g, ' ')}\n`);
  }

  /** Closes logger's input (it exits once it has logged what it read). */
  close(): void {
    this.child?.stdin?.end();
    this.child = null;
  }

  private start(): ChildProcess | null {
    const now = Date.now();
    this.starts = this.starts.filter((at) => now - at < 60_000);
    if (this.starts.length >= MAX_LOGGER_STARTS_PER_MINUTE) return null;
    this.starts.push(now);
    try {
      const child = spawn('logger', ['-t', this.tag, `--id=${process.pid}`, '-p', 'daemon.warning'], {
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      const forget = (): void => {
        if (this.child === child) this.child = null;
      };
      child.on('error', forget); // no logger(1)
      child.on('exit', forget);
      child.stdin?.on('error', forget); // EPIPE once it died
      child.unref();
      (child.stdin as { unref?: () => void } | null)?.unref?.(); // an idle logger never keeps the daemon alive
      this.child = child;
      return child;
    } catch {
      return null;
    }
  }
}

/** The line a finished reload prints. */
export function reloadLine(outcome: ReloadOutcome): string {
  return `Reloaded: keys ${outcome.keys ? 'read again' : 'kept'}, target ${outcome.target ? 're-resolved' : 'kept'}`;
}

/** Sends `state` to systemd when NOTIFY_SOCKET asks for it, reporting a failure through `report`; resolves once done (never rejects). */
export async function notifyIfWanted(state: string, report: (lines: readonly string[]) => void): Promise<void> {
  if (!notificationsWanted()) return;
  const problem = await notifySystemd(state);
  if (problem !== null) report([problem]);
}

/**
 * Resolves at the first SIGTERM once `serving()` (the tunnel is up); one that arrives before
 * that (still resolving, -D waiting for DNS) exits 0 at once, as there is nothing to drain;
 * a second SIGTERM exits at once. (SIGINT keeps its default: the process ends at once, as
 * the reference's does.)
 */
export function firstSigterm(serving: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    process.on('SIGTERM', () => {
      if (stopping || !serving()) process.exit(0);
      stopping = true;
      resolve();
    });
  });
}
