// Owns what the daemon does with systemd: socket activation (`-s systemd:`
// takes the first socket systemd passed, `-s systemd:<name>` the one named so
// in LISTEN_FDNAMES; LISTEN_PID must be this process) and readiness
// notification (READY=1 once listening, STOPPING=1 on SIGTERM), sent through
// the systemd-notify(1) binary because Node.js has no Unix datagram sockets.

import { spawn } from 'node:child_process';
import { SpipedError } from './errors.js';

/** The prefix of a source address that names a socket passed by systemd. */
export const SYSTEMD_PREFIX = 'systemd:';

/** The first descriptor systemd passes (SD_LISTEN_FDS_START). */
const LISTEN_FDS_START = 3;

/** A listening socket this process inherited, by descriptor. */
export interface InheritedSocket {
  kind: 'fd';
  fd: number;
  name: string; // as written after "systemd:" ("" for the first passed socket)
}

/** True when `text` is a `systemd:` source address. */
export function isSystemdAddress(text: string): boolean {
  return text.startsWith(SYSTEMD_PREFIX);
}

/** The socket `text` ("systemd:" or "systemd:<name>") names among those systemd passed per `env` (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES); throws EADDRESS saying what is missing. */
export function inheritedSocket(text: string, env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): InheritedSocket {
  const name = text.slice(SYSTEMD_PREFIX.length);
  const fail = (why: string): never => {
    throw new SpipedError('EADDRESS', `Cannot use socket ${text}: ${why}`);
  };
  if (!env['LISTEN_PID'] || !env['LISTEN_FDS']) fail('no sockets passed by systemd (LISTEN_PID and LISTEN_FDS are not set)');
  if (env['LISTEN_PID'] !== String(pid)) fail(`the sockets were passed to process ${env['LISTEN_PID']}, not to this one (${pid})`);
  const count = Number(env['LISTEN_FDS']);
  if (!Number.isInteger(count) || count < 1) fail(`LISTEN_FDS is ${JSON.stringify(env['LISTEN_FDS'])}, not a number of sockets`);
  if (name === '') return { kind: 'fd', fd: LISTEN_FDS_START, name };
  const names = (env['LISTEN_FDNAMES'] ?? '').split(':');
  const index = names.indexOf(name);
  if (index < 0 || index >= count) fail(`no socket named ${JSON.stringify(name)} in LISTEN_FDNAMES (${JSON.stringify(env['LISTEN_FDNAMES'] ?? '')})`);
  return { kind: 'fd', fd: LISTEN_FDS_START + index, name };
}

/** Removes the socket-activation variables from this process's environment (as sd_listen_fds(1) does), so that no child inherits them. */
export function forgetListenEnvironment(): void {
  for (const name of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES']) delete process.env[name];
}

/** True when systemd waits for notifications from this service (NOTIFY_SOCKET is set). */
export function notificationsWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env['NOTIFY_SOCKET'] ?? '') !== '';
}

/**
 * Sends `state` (e.g. "READY=1") to systemd through `systemd-notify --pid=<this pid>`, which
 * waits until the manager has taken it; resolves to null once sent, or to the reason it could
 * not be (no systemd-notify, or it failed). Never rejects. Needs NotifyAccess=all in the unit,
 * as the message comes from a child process.
 */
export function notifySystemd(state: string, program = 'systemd-notify'): Promise<string | null> {
  return new Promise((resolve) => {
    const child = spawn(program, [`--pid=${process.pid}`, state], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (err) => resolve(`Cannot notify systemd (${state}): ${program}: ${err.message}`));
    child.on('close', (code) => resolve(code === 0 ? null : `Cannot notify systemd (${state}): ${stderr.trim() || `${program} exited with ${code}`}`));
  });
}
