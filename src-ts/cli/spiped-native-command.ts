// Owns the spiped-native command: its own subcommands (spipe, run, keygen, doctor,
// --help, --version, parsed with yargs), and, for anything else, being spiped
// itself with spiped's flags.

import yargs from 'yargs';
import { runDoctor, packageVersion } from './doctor.js';
import { runKeygen } from './keygen.js';
import { runSpipe } from './spipe-command.js';
import { runSpiped } from './spiped-command.js';
import { runTunnels } from './run-command.js';
import { SPIPED_NATIVE_HELP } from './usage.js';

const PROGRAM = 'spiped-native';

/** Runs spiped-native with `argv` (without the program name); resolves to the exit code. */
export async function runSpipedNative(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv;
  switch (first) {
    case undefined:
      process.stderr.write(SPIPED_NATIVE_HELP);
      return 1;
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(SPIPED_NATIVE_HELP);
      return 0;
    case '--version':
      process.stdout.write(`${PROGRAM} ${packageVersion()}\n`);
      return 0;
    case 'spipe':
      return runSpipe(rest);
    case 'run':
      return runTunnels(rest);
    case 'keygen':
    case 'doctor':
      return runSubcommand(first, rest);
    default:
      return runSpiped(argv);
  }
}

/** keygen and doctor, whose few arguments yargs checks (unknown ones are usage errors). */
async function runSubcommand(name: 'keygen' | 'doctor', args: readonly string[]): Promise<number> {
  let failure: string | null = null;
  const parser = yargs([...args])
    .scriptName(`${PROGRAM} ${name}`)
    .usage(name === 'keygen' ? '$0 [file]' : '$0 [--key <file>]')
    .option('key', { type: 'string', describe: 'key file whose size to check', hidden: name !== 'doctor' })
    .strictOptions()
    .help(false)
    .version(false)
    .exitProcess(false)
    .fail((message: string | null, err: Error | undefined) => {
      failure = message ?? err?.message ?? 'bad arguments';
    });
  const parsed = await parser.parseAsync();
  const positional = parsed._.map(String);
  if (failure === null && name === 'doctor' && positional.length > 0) failure = `Unknown argument: ${positional[0]}`;
  if (failure === null && name === 'keygen' && (positional.length > 1 || parsed.key !== undefined)) {
    failure = 'keygen takes at most one file name';
  }
  if (failure !== null) {
    process.stderr.write(`${PROGRAM}: ${String(failure)}\n${SPIPED_NATIVE_HELP}`);
    return 1;
  }
  return name === 'keygen' ? runKeygen(PROGRAM, positional[0]) : runDoctor(PROGRAM, parsed.key);
}
