// Owns what makes spiped a daemon: detaching (the parent re-runs its own
// command line as a detached child, in a new session, and waits until the
// child is listening), the pidfile, switching user and group after binding
// (-u), and sending warnings to the system log (--syslog, via logger(1)).

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
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

/**
 * Parent side of detaching: re-runs this process detached (same node, script and arguments),
 * with stdout/stderr inherited (as the reference keeps them) and `stdinBytes` (the -k - key)
 * as its standard input. Resolves to 0 once the child is ready, else to its failure code.
 */
export function detach(program: string, stdinBytes: Buffer | null): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      detached: true,
      env: { ...process.env, [CHILD_MARKER]: '1' },
      stdio: [stdinBytes === null ? 'ignore' : 'pipe', 'inherit', 'inherit', 'ipc'],
    });
    let settled = false;
    const settle = (code: number): void => {
      if (settled) return;
      settled = true;
      if (child.connected) child.disconnect();
      child.unref();
      resolve(code);
    };
    child.on('message', (message) => {
      if (message === READY) settle(0);
    });
    child.on('exit', (code) => settle(code === null || code === 0 ? 1 : code));
    child.on('error', (err) => {
      process.stderr.write(`${program}: Failed to daemonize: ${strerror(err)}\n`);
      settle(1);
    });
    if (stdinBytes !== null) {
      child.stdin?.on('error', () => {}); // the child may fail before reading its key
      child.stdin?.end(stdinBytes);
    }
  });
}

/** Child side: tells the waiting parent that the daemon is up, and drops the IPC channel. */
export function notifyParentReady(): void {
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

/** --syslog: hands one warning to the system log through logger(1); best effort, never throws. */
export function syslogWarning(tag: string, message: string): void {
  try {
    const child = spawn('logger', ['-t', tag, '-p', 'daemon.warning', '--', message], { stdio: 'ignore' });
    child.on('error', () => {});
    child.unref();
  } catch {
    // no logger(1): the warning goes nowhere, as syslog(3) without /dev/log would
  }
}
