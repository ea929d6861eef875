// Owns how the tools word failures: the reference's lines for start-up errors
// (key file, name lookup, binding), glibc's strerror / gai_strerror texts for
// Node's error codes, and writing "<program>: <message>" lines to stderr.

import { parseAddress } from '../address.js';
import { cryptoBackend } from '../crypto/index.js';
import { SpipedError } from '../errors.js';

/** glibc's strerror() texts for the error codes the tools can meet. */
const STRERROR: Readonly<Record<string, string>> = {
  EACCES: 'Permission denied',
  EADDRINUSE: 'Address already in use',
  EADDRNOTAVAIL: 'Cannot assign requested address',
  EAFNOSUPPORT: 'Address family not supported by protocol',
  ECONNREFUSED: 'Connection refused',
  ECONNRESET: 'Connection reset by peer',
  EEXIST: 'File exists',
  EHOSTUNREACH: 'No route to host',
  EINVAL: 'Invalid argument',
  EISDIR: 'Is a directory',
  ELOOP: 'Too many levels of symbolic links',
  EMFILE: 'Too many open files',
  ENAMETOOLONG: 'File name too long',
  ENETUNREACH: 'Network is unreachable',
  ENOENT: 'No such file or directory',
  ENOTDIR: 'Not a directory',
  EPERM: 'Operation not permitted',
  EPIPE: 'Broken pipe',
  ERANGE: 'Numerical result out of range',
  EROFS: 'Read-only file system',
  ETIMEDOUT: 'Connection timed out',
};

/** glibc's gai_strerror() texts, keyed by the code Node's dns.lookup reports. */
const GAI_STRERROR: Readonly<Record<string, string>> = {
  ENOTFOUND: 'Name or service not known',
  EAI_NONAME: 'Name or service not known',
  EAI_AGAIN: 'Temporary failure in name resolution',
  EAI_FAIL: 'Non-recoverable failure in name resolution',
  ENODATA: 'No address associated with hostname',
  EAI_NODATA: 'No address associated with hostname',
  EAI_FAMILY: 'ai_family not supported',
  EAI_MEMORY: 'Memory allocation failure',
};

/** The `code` of an error (or of its cause), if it has a string one. */
function codeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code: unknown = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** The underlying error a SpipedError wraps, or the error itself. */
function causeOf(err: unknown): unknown {
  return err instanceof SpipedError && err.cause !== undefined ? err.cause : err;
}

/** The message of any thrown value. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** glibc's strerror() text for a system error (its own message when the code is unknown). */
export function strerror(err: unknown): string {
  const code = codeOf(err);
  return (code !== undefined ? STRERROR[code] : undefined) ?? errorText(err);
}

/** Writes each line as "<program>: <line>" on stderr. */
export function warn(program: string, lines: readonly string[]): void {
  for (const line of lines) process.stderr.write(`${program}: ${line}\n`);
}

/** The lines the reference prints for a malformed address `text` (never throws). */
export function addressProblem(text: string, portOptional = false): string[] | null {
  try {
    parseAddress(text, portOptional);
    return null;
  } catch (err) {
    return [errorText(err), `Error resolving socket address: ${text}`];
  }
}

/** Start-up failure `err` (key, lookup of one of `addresses`, bind) as the reference's lines. */
export function startupFailureLines(err: unknown, addresses: readonly string[]): string[] {
  const cause = causeOf(err);
  const code = err instanceof SpipedError ? err.code : undefined;
  if (code === 'EKEYFILE') {
    const keyFile = (err as SpipedError).keyFile ?? '';
    const why = strerror(cause);
    if (keyFile === '-') return [`Error reading from stdin: ${why}`, 'Error reading shared secret'];
    const opened = codeOf(cause) === 'EISDIR' || codeOf(cause) === 'EIO';
    return [`${opened ? 'Error reading file' : 'Cannot open file'}: ${keyFile}: ${why}`, 'Error reading shared secret'];
  }
  if (code === 'ERESOLVE') {
    const host: unknown = typeof cause === 'object' && cause !== null ? (cause as { hostname?: unknown }).hostname : undefined;
    const failed = addresses.find((text) => {
      const parsed = parseAddress(text, true);
      return parsed.kind === 'inet' && parsed.host === host;
    });
    const lookupCode = codeOf(cause);
    const why = (lookupCode !== undefined ? GAI_STRERROR[lookupCode] : undefined) ?? errorText(cause);
    return typeof host === 'string' && failed !== undefined
      ? [`Error looking up ${host}: ${why}`, `Error resolving socket address: ${failed}`]
      : [errorText(err)];
  }
  if (code === 'EADDRESS' && cause !== err && codeOf(cause) !== undefined) {
    return [`Error binding socket: ${strerror(cause)}`];
  }
  return [errorText(err)];
}

/** Loads the crypto backend now; returns the notice line to print when the node:crypto fallback is live though nobody asked for it (SPIPED_NATIVE=0), else null. */
export function fallbackNotice(): string | null {
  let backend: ReturnType<typeof cryptoBackend>;
  try {
    backend = cryptoBackend();
  } catch {
    return null; // SPIPED_NATIVE=1 without an addon: the first seal/open reports it
  }
  if (backend.name !== 'node-crypto' || process.env['SPIPED_NATIVE'] === '0') return null;
  return `notice: native addon not in use (${backend.reason ?? 'unknown reason'}); using the slower node:crypto backend; see 'spiped-native doctor'`;
}

/** How long identical warnings are folded into one line with a count. */
export const COALESCE_WINDOW_MS = 1000;
/** Distinct warnings tracked at once (a flood of distinct texts is printed as it comes). */
const MAX_TRACKED_WARNINGS = 64;

/**
 * Folds bursts of identical warnings (a peer can make the daemon warn at will, e.g. by
 * connecting at the -n limit), so that each text is written at most once a second: the
 * first of a kind at once; repeats are counted, and when a second has passed one line
 * says how many there were ("<warning> (repeated N more times)"), which starts the next
 * second's count. `flush()` writes what is pending (at exit).
 */
export class WarningCoalescer {
  private readonly write: (line: string) => void;
  private readonly windows = new Map<string, { repeats: number; timer: NodeJS.Timeout }>();

  /** Writes lines through `write`. */
  constructor(write: (line: string) => void) {
    this.write = write;
  }

  /** Reports one warning line. */
  report(line: string): void {
    const window = this.windows.get(line);
    if (window !== undefined) {
      window.repeats += 1;
      return;
    }
    this.write(line);
    if (this.windows.size < MAX_TRACKED_WARNINGS) this.open(line);
  }

  /** Writes the counts of every open window now. */
  flush(): void {
    for (const line of [...this.windows.keys()]) this.close(line, false);
  }

  private open(line: string): void {
    const timer = setTimeout(() => this.close(line, true), COALESCE_WINDOW_MS);
    timer.unref();
    this.windows.set(line, { repeats: 0, timer });
  }

  private close(line: string, reopen: boolean): void {
    const window = this.windows.get(line);
    if (window === undefined) return;
    clearTimeout(window.timer);
    this.windows.delete(line);
    if (window.repeats === 0) return;
    this.write(`${line} (repeated ${window.repeats} more times)`);
    if (reopen) this.open(line); // still flooding: the next second is counted too
  }
}
