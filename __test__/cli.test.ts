// The command lines of spiped, spipe and spiped-native: every usage error,
// -v, and the start-up failures, compared with the reference binaries (same
// stderr apart from the -b we add to the usage text, same exit code); and
// spiped-native's own subcommands (keygen, doctor, --help).

import test from 'ava';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { C_SPIPE, C_SPIPED, OUR_SPIPE, OUR_SPIPED, referenceAvailable, tempDir, writeKey } from './helpers/processes.js';
import { OUR_SPIPED_NATIVE, mapLimit, runCli, withoutBindOption, type RunResult } from './helpers/cli-run.js';

const HAVE_REFERENCE = referenceAvailable();
const refTest = HAVE_REFERENCE ? test : test.skip;

/** A temp dir for one test, removed afterwards. */
function scratch(t: { teardown: (fn: () => void) => void }): string {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  return dir;
}

const LOCAL = '[127.0.0.1]:1';
const NO_KEY = '/nonexistent/key';
const VALID = ['-d', '-s', LOCAL, '-t', '[127.0.0.1]:2', '-k', NO_KEY];

/** spiped command lines that must fail (or print the version) exactly like the reference. */
const SPIPED_CASES: readonly (readonly string[])[] = [
  [],
  ['-v'],
  ['-d', '-v', '-x'],
  ['-vx'],
  ['-x'],
  ['--foo'],
  ['---'],
  ['--syslog=1', ...VALID],
  ['-'],
  ['-e', '-d', '-s', 'a', '-t', 'b', '-k', 'c'],
  ['-d', '-d', '-v'],
  ['-e'],
  ['-d', '-s', LOCAL, '-t', LOCAL],
  ['-d', '-k', NO_KEY, '-t', LOCAL],
  ['-d', '-k', NO_KEY, '-s', LOCAL],
  ['-d', '-s'],
  [...VALID, '-k'],
  [...VALID, '-u'],
  [...VALID, '-f', '-g'],
  [...VALID, '-s', LOCAL],
  [...VALID, '-F', '-F'],
  [...VALID, '--syslog', '--syslog'],
  [...VALID, 'extra'],
  [...VALID, '--', 'extra'],
  ...['abc', '1.5', '', '5abc', '5 ', '08', '99999999999999999999999', '18446744073709551616'].map((n) => [...VALID, '-n', n]),
  [...VALID, '-n', '5', '-n', '6'],
  ...['abc', '', '5x', '-1', 'nan', '1e400', '1e-400', '1e-310'].map((o) => [...VALID, '-o', o]),
  [...VALID, '-o', '1', '-o', '1'],
  ...['abc', '-1', '0.5', 'inf', 'nan'].map((r) => [...VALID, '-r', r, '-R']),
  [...VALID, '-R', '-R'],
  // A second -k is the reference's usage error except on a line with -d (several keys, see keys.test.ts).
  ['-e', '-s', LOCAL, '-t', '[127.0.0.1]:2', '-k', NO_KEY, '-k', NO_KEY],
  ['-k', NO_KEY, '-k', NO_KEY, '-e', '-s', LOCAL, '-t', '[127.0.0.1]:2'],
  ['-e', '-k', NO_KEY, '-k', NO_KEY, '-Z'],
  ['-k', NO_KEY, '-k', NO_KEY, '-s', LOCAL, '-t', '[127.0.0.1]:2'],
  // Accepted values: the run gets as far as the key file.
  ...['-1', '0', '0x10', '010', ' 5', '+5', '501'].map((n) => [...VALID, '-n', n]),
  ...['0', '-0', 'inf', '0.5', '1e3', '0x1p3'].map((o) => [...VALID, '-o', o]),
  ...['0', '60'].map((r) => [...VALID, '-r', r, '-R']),
  ['-dF', '-s', LOCAL, '-t', LOCAL, '-k', NO_KEY],
  ['-dk' + NO_KEY, '-s' + LOCAL, '-t', LOCAL],
  [...VALID, '--'],
  ['-d', '-s', LOCAL, '-t', LOCAL, '-k', '/'],
];

/** spipe command lines, likewise. */
const SPIPE_CASES: readonly (readonly string[])[] = [
  [],
  ['-v'],
  ['-x'],
  ['-n', '5'],
  ['-t', LOCAL],
  ['-k', NO_KEY],
  ['-t', LOCAL, '-k', NO_KEY],
  ['-t', LOCAL, '-k', NO_KEY, '-f', '-g'],
  ['-t', LOCAL, '-k', NO_KEY, 'extra'],
  ['-t', LOCAL, '-k', NO_KEY, '-o', 'abc'],
  ['-t', LOCAL, '-k', NO_KEY, '-o', '-1'],
  ['-t', LOCAL, '-k', NO_KEY, '-o', 'nan'],
  ['-t', LOCAL, '-k', NO_KEY, '-o'],
  ['-t', LOCAL, '-t', LOCAL, '-k', NO_KEY],
  ['-t', 'nonexistent.invalid:10', '-k', NO_KEY],
];

/** Asserts that our run printed what the reference printed (modulo -b in the usage) with the same exit code. */
function assertSameAs(t: { is: (a: unknown, b: unknown, message?: string) => void }, ours: RunResult, reference: RunResult, what: string): void {
  t.is(withoutBindOption(ours.stderr), reference.stderr, `${what}: stderr`);
  t.is(ours.stdout.toString(), reference.stdout.toString(), `${what}: stdout`);
  t.is(ours.code, reference.code, `${what}: exit code`);
}

refTest('spiped: usage errors, -v and argument parsing match the reference', async (t) => {
  const dir = scratch(t);
  const results = await mapLimit(SPIPED_CASES, 3, (args) => Promise.all([runCli(OUR_SPIPED, args, { dir }), runCli(C_SPIPED, args, { dir })]));
  results.forEach(([ours, reference], i) => assertSameAs(t, ours, reference, `spiped ${JSON.stringify(SPIPED_CASES[i])}`));
});

refTest('spipe: usage errors, -v and argument parsing match the reference', async (t) => {
  const dir = scratch(t);
  const results = await mapLimit(SPIPE_CASES, 3, (args) => Promise.all([runCli(OUR_SPIPE, args, { dir }), runCli(C_SPIPE, args, { dir })]));
  results.forEach(([ours, reference], i) => assertSameAs(t, ours, reference, `spipe ${JSON.stringify(SPIPE_CASES[i])}`));
});

test('spiped: the exact texts of the common failures (independent of the reference)', async (t) => {
  const dir = scratch(t);
  const noArgs = await runCli(OUR_SPIPED, [], { dir });
  t.is(noArgs.code, 1);
  t.true(noArgs.stderr.startsWith('usage: spiped {-e | -d} -s <source socket> -t <target socket> [-b <bind address>] -k <key file>\n'));
  t.true(noArgs.stderr.endsWith('       spiped -v\n'));
  const version = await runCli(OUR_SPIPED, ['-v'], { dir });
  t.deepEqual([version.code, version.stderr, version.stdout.length], [0, 'spiped 1.6.2\n', 0]);
  const badN = await runCli(OUR_SPIPED, [...VALID, '-n', 'abc'], { dir });
  t.deepEqual([badN.code, badN.stderr], [1, 'spiped: Error parsing argument: -n abc: Invalid argument\n']);
  const illegal = await runCli(OUR_SPIPED, ['-x'], { dir });
  t.is(illegal.code, 1);
  t.true(illegal.stderr.startsWith('spiped: illegal option -- -x\nusage: spiped '));
  const noKey = await runCli(OUR_SPIPED, ['-F', ...VALID], { dir });
  t.deepEqual([noKey.code, noKey.stderr], [1, `spiped: Cannot open file: ${NO_KEY}: No such file or directory\nspiped: Error reading shared secret\n`]);
  const key = writeKey(dir);
  const unresolvable = await runCli(OUR_SPIPED, ['-d', '-s', LOCAL, '-t', 'nonexistent.invalid:10', '-k', key], { dir });
  t.is(unresolvable.code, 1);
  t.regex(unresolvable.stderr, /^spiped: Error looking up nonexistent\.invalid: .+\nspiped: Error resolving socket address: nonexistent\.invalid:10\n$/);
});

refTest('spiped: missing key, unresolvable target and a busy port fail like the reference, detaching or not', async (t) => {
  const dir = scratch(t);
  const key = writeKey(dir);
  const holder = createServer().listen(0, '127.0.0.1');
  t.teardown(() => void holder.close());
  await new Promise((resolve) => holder.once('listening', resolve));
  const busy = (holder.address() as AddressInfo).port;
  const cases: string[][] = [
    VALID,
    ['-F', ...VALID],
    ['-d', '-s', LOCAL, '-t', 'nonexistent.invalid:10', '-k', key],
    ['-e', '-s', 'nonexistent.invalid:10', '-t', LOCAL, '-k', NO_KEY, '-F'],
    ['-d', '-s', `[127.0.0.1]:${busy}`, '-t', LOCAL, '-k', key, '-p', join(dir, 'busy.pid')],
  ];
  for (const args of cases) {
    const [ours, reference] = await Promise.all([runCli(OUR_SPIPED, args, { dir }), runCli(C_SPIPED, args, { dir })]);
    assertSameAs(t, ours, reference, `spiped ${args.join(' ')}`);
    t.is(ours.code, 1);
  }
});

refTest('spipe: "Could not connect" and a missing key like the reference', async (t) => {
  const dir = scratch(t);
  const key = writeKey(dir);
  const closedPort = 1; // tcpmux: nothing listens there, and no test can take it over (a freePort() could be reused)
  for (const args of [
    ['-t', `[127.0.0.1]:${closedPort}`, '-k', key],
    ['-t', `[127.0.0.1]:${closedPort}`, '-k', NO_KEY],
  ]) {
    const [ours, reference] = await Promise.all([runCli(OUR_SPIPE, args, { dir }), runCli(C_SPIPE, args, { dir })]);
    assertSameAs(t, ours, reference, `spipe ${args.join(' ')}`);
  }
  const ours = await runCli(OUR_SPIPE, ['-t', `[127.0.0.1]:${closedPort}`, '-k', key], { dir });
  t.deepEqual([ours.code, ours.stderr], [1, 'spipe: Could not connect\n']);
});

test('spiped-native is spiped when given its flags, and runs spipe as a subcommand', async (t) => {
  const dir = scratch(t);
  for (const args of [['-e'], ['-v'], ['-x'], [...VALID, '-n', 'abc'], ['-F', ...VALID]]) {
    const [native, spiped] = await Promise.all([runCli(OUR_SPIPED_NATIVE, args, { dir }), runCli(OUR_SPIPED, args, { dir })]);
    t.deepEqual([native.code, native.stderr], [spiped.code, spiped.stderr], `spiped-native ${args.join(' ')}`);
  }
  const [native, spipe] = await Promise.all([runCli(OUR_SPIPED_NATIVE, ['spipe', '-v'], { dir }), runCli(OUR_SPIPE, ['-v'], { dir })]);
  t.deepEqual([native.code, native.stderr], [0, 'spipe 1.6.2\n']);
  t.deepEqual([spipe.code, spipe.stderr], [0, 'spipe 1.6.2\n']);
  const help = await runCli(OUR_SPIPED_NATIVE, ['--help'], { dir });
  t.is(help.code, 0);
  for (const word of ['keygen', 'doctor', 'spipe -t', 'usage: spiped {-e | -d}']) t.true(help.stdout.toString().includes(word), word);
  const bare = await runCli(OUR_SPIPED_NATIVE, [], { dir });
  t.is(bare.code, 1);
  t.true(bare.stderr.includes('keygen'));
});

test('keygen: 32 random bytes in a new 0600 file; refuses to overwrite; raw bytes to a piped stdout', async (t) => {
  const dir = scratch(t);
  const file = join(dir, 'new.key');
  const first = await runCli(OUR_SPIPED_NATIVE, ['keygen', file], { dir });
  t.is(first.code, 0, first.stderr);
  t.is(first.stdout.length, 0);
  const stat = statSync(file);
  t.is(stat.size, 32);
  t.is(stat.mode & 0o777, 0o600);
  const before = statSync(file).mtimeMs;
  const again = await runCli(OUR_SPIPED_NATIVE, ['keygen', file], { dir });
  t.is(again.code, 1);
  t.regex(again.stderr, /refusing to overwrite/);
  t.is(statSync(file).mtimeMs, before);
  const [a, b] = await Promise.all([runCli(OUR_SPIPED_NATIVE, ['keygen'], { dir }), runCli(OUR_SPIPED_NATIVE, ['keygen'], { dir })]);
  t.deepEqual([a.code, a.stdout.length, b.stdout.length], [0, 32, 32]);
  t.false(a.stdout.equals(b.stdout), 'two keys differ');
  const extra = await runCli(OUR_SPIPED_NATIVE, ['keygen', 'x', 'y'], { dir });
  t.is(extra.code, 1);
  if (existsSync('/usr/bin/script')) {
    // stdout on a terminal (script(1) gives it a pty): refused, no bytes written.
    const tty = await runCli('/usr/bin/script', ['-qec', `${process.execPath} ${OUR_SPIPED_NATIVE} keygen`, '/dev/null'], { dir });
    t.is(tty.code, 1);
    t.regex(tty.stdout.toString(), /refusing to write a binary key to a terminal/);
  }
});

test('doctor: backend, CPU features, versions and platform; warns about a short key file', async (t) => {
  const dir = scratch(t);
  const good = writeKey(dir, 'good', 32);
  const report = await runCli(OUR_SPIPED_NATIVE, ['doctor', '--key', good], { dir });
  t.is(report.code, 0, report.stderr);
  const text = report.stdout.toString();
  t.regex(text, /^spiped-native \d+\.\d+\.\d+ \(spiped 1\.6\.2 compatible\)$/m);
  t.regex(text, /^crypto backend: (native|node-crypto) \(.+\)$/m);
  t.regex(text, /^backend CPU features: aesni=(yes|no) shani=(yes|no) vaes=(yes|no)$/m);
  t.true(text.includes(`node: ${process.version}`));
  t.true(text.includes(`napi: ${process.versions.napi}`));
  t.true(text.includes(`platform: ${process.platform} ${process.arch}`));
  t.true(text.includes(`key file: ${good}: 32 bytes`));
  t.is(report.stderr, '');
  const forced = await runCli(OUR_SPIPED_NATIVE, ['doctor'], { dir, env: { SPIPED_NATIVE: '0' } });
  t.is(forced.code, 0);
  t.regex(forced.stdout.toString(), /^crypto backend: node-crypto \(SPIPED_NATIVE=0\)$/m);
  const short = join(dir, 'short');
  writeFileSync(short, 'password\n');
  const warned = await runCli(OUR_SPIPED_NATIVE, ['doctor', '--key', short], { dir });
  t.is(warned.code, 1);
  t.regex(warned.stderr, /warning: key file .*short is only 9 bytes; use at least 32 random bytes/);
  const bad = await runCli(OUR_SPIPED_NATIVE, ['doctor', '--bogus'], { dir });
  t.is(bad.code, 1);
});
