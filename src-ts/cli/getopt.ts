// Owns command-line parsing the way the reference tools do it (libcperciva's
// getopt and PARSENUM): grouped short flags (-dF), attached or separate
// arguments (-k/path, -k /path), long options (--syslog), "--" ending the
// options, and numbers parsed with C strtoumax / strtod semantics; plus the
// parse-outcome shape and argument-error text both tools share.

import { strerror } from './messages.js';

/** An option the tool accepts, e.g. { name: '-k', hasArg: true } or { name: '--syslog', hasArg: false }. */
export interface OptionSpec {
  name: string;
  hasArg: boolean;
}

/** A parsed command line, or what to print on stderr and the exit code (usage errors, -v). */
export type ParseOutcome<T> = { ok: true; config: T } | { ok: false; exitCode: number; stderr: string };

/** Builds a tool's option table from the options taking an argument and the plain flags. */
export function optionSpecs(withArg: readonly string[], flags: readonly string[]): OptionSpec[] {
  return [...withArg.map((name) => ({ name, hasArg: true })), ...flags.map((name) => ({ name, hasArg: false }))];
}

/** The reference's PARSENUM failure: "<program>: Error parsing argument: -o abc: Invalid argument", exit 1. */
export function argumentError(program: string, name: string, value: string, errno: 'EINVAL' | 'ERANGE'): { ok: false; exitCode: number; stderr: string } {
  return { ok: false, exitCode: 1, stderr: `${program}: Error parsing argument: ${name} ${value}: ${strerror({ code: errno })}\n` };
}

/** One step of the parse: an option (with its argument), or the error that ends the parse. */
export type OptionEvent =
  | { kind: 'option'; name: string; value: string }
  | { kind: 'illegal'; name: string } // "illegal option -- <name>"
  | { kind: 'missing'; name: string }; // "Missing argument to <name>"

/** The options in command-line order (stopping after an error), and the operands after them. */
export interface GetoptResult {
  events: OptionEvent[];
  operands: string[];
}

/** Splits `argv` (without the program name) into option events and operands, as the reference getopt does. */
export function getopt(argv: readonly string[], specs: readonly OptionSpec[]): GetoptResult {
  const byName = new Map(specs.map((spec) => [spec.name, spec]));
  const events: OptionEvent[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg : arg.slice(0, eq);
      const spec = byName.get(name);
      if (spec === undefined || (!spec.hasArg && eq >= 0)) {
        events.push({ kind: 'illegal', name });
        return { events, operands: [] };
      }
      if (!spec.hasArg) {
        events.push({ kind: 'option', name, value: '' });
      } else if (eq >= 0) {
        events.push({ kind: 'option', name, value: arg.slice(eq + 1) });
      } else if (i + 1 < argv.length) {
        events.push({ kind: 'option', name, value: argv[++i]! });
      } else {
        events.push({ kind: 'missing', name });
        return { events, operands: [] };
      }
      continue;
    }
    for (let j = 1; j < arg.length; j++) {
      const name = `-${arg[j]}`;
      const spec = byName.get(name);
      if (spec === undefined) {
        events.push({ kind: 'illegal', name });
        return { events, operands: [] };
      }
      if (!spec.hasArg) {
        events.push({ kind: 'option', name, value: '' });
        continue;
      }
      if (j + 1 < arg.length) {
        events.push({ kind: 'option', name, value: arg.slice(j + 1) });
      } else if (i + 1 < argv.length) {
        events.push({ kind: 'option', name, value: argv[++i]! });
      } else {
        events.push({ kind: 'missing', name });
        return { events, operands: [] };
      }
      break;
    }
  }
  return { events, operands: argv.slice(i) };
}

/** A parsed number, or the errno PARSENUM would report. */
export type ParsedNumber<T> = { ok: true; value: T } | { ok: false; errno: 'EINVAL' | 'ERANGE' };

const C_SPACE = /^[ \t\n\v\f\r]*/;
const UINTMAX_MAX = (1n << 64n) - 1n;

/** PARSENUM of a size_t: C strtoumax(text, base 0) over the whole string ("-1" wraps, as in C). */
export function parseUnsigned(text: string): ParsedNumber<bigint> {
  const rest = text.slice(C_SPACE.exec(text)![0].length);
  const match = /^([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)/.exec(rest);
  if (match === null || match[0].length !== rest.length) return { ok: false, errno: 'EINVAL' };
  const digits = match[2]!;
  const magnitude = /^0[xX]/.test(digits) ? BigInt(digits) : digits.length > 1 && digits.startsWith('0') ? BigInt(`0o${digits.slice(1)}`) : BigInt(digits);
  if (magnitude > UINTMAX_MAX) return { ok: false, errno: 'ERANGE' };
  return { ok: true, value: match[1] === '-' ? (UINTMAX_MAX + 1n - magnitude) & UINTMAX_MAX : magnitude };
}

const STRTOD =
  /^[+-]?(?:inf(?:inity)?|nan(?:\([0-9a-z_]*\))?|0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)/i;
const DBL_MIN = 2.2250738585072014e-308;

/** Converts a C hexadecimal floating-point literal (without sign), e.g. "0x1.8p3". */
function hexFloat(literal: string): number {
  const [mantissa = '', exponent = '0'] = literal.slice(2).split(/p/i);
  const [whole = '', fraction = ''] = mantissa.split('.');
  const value = Number.parseInt(`${whole}${fraction}` || '0', 16);
  return value * 2 ** (Number(exponent) - 4 * fraction.length);
}

/** PARSENUM of a double in [0, +inf]: C strtod over the whole string (NaN passes, as in C). */
export function parseNonNegativeDouble(text: string): ParsedNumber<number> {
  const rest = text.slice(C_SPACE.exec(text)![0].length);
  const match = STRTOD.exec(rest);
  if (match === null || match[0].length !== rest.length) return { ok: false, errno: 'EINVAL' };
  const negative = rest.startsWith('-');
  const literal = rest.replace(/^[+-]/, '').toLowerCase();
  let value: number;
  if (literal.startsWith('inf')) value = Infinity;
  else if (literal.startsWith('nan')) value = NaN;
  else {
    value = literal.startsWith('0x') ? hexFloat(literal) : Number(literal);
    const mantissa = literal.startsWith('0x') ? literal.slice(2).split('p')[0]! : literal.split('e')[0]!;
    const nonZeroDigits = /[1-9a-f]/.test(mantissa);
    if (!Number.isFinite(value) || (nonZeroDigits && value < DBL_MIN)) return { ok: false, errno: 'ERANGE' };
  }
  if (negative) value = -value;
  if (value < 0) return { ok: false, errno: 'ERANGE' };
  return { ok: true, value };
}
