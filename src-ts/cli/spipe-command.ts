// Owns the spipe command: parsing its flags as the reference does, then
// connect() and copying standard input to the connection and the connection
// to standard output (binary-safe, half-close carried through; nothing but
// the peer's bytes ever goes to stdout, so it works as an ssh ProxyCommand).

import { DEFAULTS, MAX_TIMER_SECONDS, connect } from '../api.js';
import { SpipedError } from '../errors.js';
import type { SecureStream } from '../secure-stream.js';
import { argumentError, getopt, optionSpecs, parseNonNegativeDouble, type ParseOutcome } from './getopt.js';
import { addressProblem, errorText, fallbackNotice, startupFailureLines, warn } from './messages.js';
import { REFERENCE_VERSION, SPIPE_USAGE } from './usage.js';

const PROGRAM = 'spipe';

/** Everything a spipe command line asks for. */
export interface SpipeConfig {
  target: string; // -t
  key: string; // -k (path or "-")
  bind: string | undefined; // -b
  fast: boolean; // -f
  requirePfs: boolean; // -g
  keepAlive: boolean; // false with -j
  timeout: number; // -o, seconds
}

const SPIPE_OPTIONS = optionSpecs(['-b', '-k', '-o', '-t'], ['-f', '-g', '-j', '-v']);

/** Reads a spipe command line (without the program name) exactly as the reference does. */
export function parseSpipeArgs(argv: readonly string[]): ParseOutcome<SpipeConfig> {
  const usage = (before = ''): ParseOutcome<SpipeConfig> => ({ ok: false, exitCode: 1, stderr: before + SPIPE_USAGE });
  const values = new Map<string, string>();
  let o: number | undefined;
  const { events, operands } = getopt(argv, SPIPE_OPTIONS);
  for (const event of events) {
    if (event.kind === 'illegal') return usage(`${PROGRAM}: illegal option -- ${event.name}\n`);
    if (event.kind === 'missing') return usage(`${PROGRAM}: Missing argument to ${event.name}\n`);
    const { name, value } = event;
    if (name === '-v') return { ok: false, exitCode: 0, stderr: `${PROGRAM} ${REFERENCE_VERSION}\n` };
    if (values.has(name)) return usage();
    values.set(name, value);
    if (name === '-o') {
      const parsed = parseNonNegativeDouble(value);
      if (!parsed.ok) return argumentError(PROGRAM, name, value, parsed.errno);
      o = parsed.value;
    }
  }
  if (operands.length !== 0) return usage();
  const timeout = o === undefined || o === 0 ? DEFAULTS.timeout : o;
  const target = values.get('-t');
  const key = values.get('-k');
  if (values.has('-f') && values.has('-g')) return usage();
  if (key === undefined) return usage();
  if (!(timeout > 0)) return usage();
  if (target === undefined) return usage();
  return {
    ok: true,
    config: {
      target,
      key,
      bind: values.get('-b'),
      fast: values.has('-f'),
      requirePfs: values.has('-g'),
      keepAlive: !values.has('-j'),
      timeout: Math.min(timeout, MAX_TIMER_SECONDS),
    },
  };
}

/** Runs spipe with `argv` (without the program name); resolves to the exit code once the connection is over. */
export async function runSpipe(argv: readonly string[]): Promise<number> {
  const parsed = parseSpipeArgs(argv);
  if (!parsed.ok) {
    process.stderr.write(parsed.stderr);
    return parsed.exitCode;
  }
  const config = parsed.config;
  const malformed = (config.bind === undefined ? null : addressProblem(config.bind, true)) ?? addressProblem(config.target);
  if (malformed !== null) {
    warn(PROGRAM, malformed);
    return 1;
  }
  const notice = fallbackNotice();
  if (notice !== null) warn(PROGRAM, [notice]);
  let stream: SecureStream;
  try {
    stream = await connect({
      target: config.target,
      key: config.key,
      bind: config.bind,
      fast: config.fast,
      requirePfs: config.requirePfs,
      keepAlive: config.keepAlive,
      timeout: config.timeout,
    });
  } catch (err) {
    warn(PROGRAM, connectFailureLines(err, config));
    return 1;
  }
  return shuttle(stream);
}

/** What spipe prints when connect() fails. */
function connectFailureLines(err: unknown, config: SpipeConfig): string[] {
  if (!(err instanceof SpipedError)) return [errorText(err)];
  switch (err.code) {
    case 'EKEYFILE':
    case 'ERESOLVE':
    case 'EADDRESS':
      return startupFailureLines(err, config.bind === undefined ? [config.target] : [config.bind, config.target]);
    case 'ECONNECT':
      return ['Could not connect'];
    default:
      return [`Connection error: ${err.message}`];
  }
}

/** Copies stdin -> stream and stream -> stdout; resolves to 0 when both directions ended cleanly, else 1. */
function shuttle(stream: SecureStream): Promise<number> {
  return new Promise((resolve) => {
    let received = false; // the server ended its side and everything reached stdout
    let sent = false; // stdin ended and the end was passed on
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      process.stdin.unpipe(stream);
      process.stdin.pause();
      stream.destroy();
      resolve(code);
    };
    const maybeDone = (): void => {
      if (received && sent) finish(0);
    };
    stream.on('error', (err) => {
      warn(PROGRAM, [`Connection error: ${errorText(err)}`]);
      finish(1);
    });
    process.stdout.on('error', () => finish(1)); // e.g. EPIPE: the reader went away
    process.stdin.on('error', () => finish(1));
    stream.on('data', (chunk: Buffer) => {
      if (!process.stdout.write(chunk)) {
        stream.pause();
        process.stdout.once('drain', () => stream.resume());
      }
    });
    stream.on('end', () => {
      received = true;
      maybeDone();
    });
    stream.on('finish', () => {
      sent = true;
      maybeDone();
    });
    process.stdin.pipe(stream);
  });
}
