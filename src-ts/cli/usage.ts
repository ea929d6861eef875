// Owns the fixed texts of the command-line tools: the usage blocks (the
// reference's, plus -b), the version lines, and spiped-native's help.

/** The spiped release whose command line and messages these tools reproduce. */
export const REFERENCE_VERSION = '1.6.2';

/** spiped's usage block (the reference's, with -b where upstream spiped puts it). */
export const SPIPED_USAGE =
  'usage: spiped {-e | -d} -s <source socket> -t <target socket> [-b <bind address>] -k <key file>\n' +
  '    [-DFj] [-f | -g] [-n <max # connections>] [-o <connection timeout>]\n' +
  '    [-p <pidfile>] [-r <rtime> | -R] [--syslog]\n' +
  '    [-u {<username> | <:groupname> | <username:groupname>}]\n' +
  '       spiped -v\n';

/** spipe's usage block (the reference's, with -b). */
export const SPIPE_USAGE =
  'usage: spipe -t <target socket> -k <key file> [-b <bind address>] [-f | -g] [-j]\n' +
  '    [-o <connection timeout>]\n' +
  '       spipe -v\n';

/** spiped-native's own help (its subcommands, then what it does with spiped's flags). */
export const SPIPED_NATIVE_HELP =
  'usage: spiped-native {-e | -d} -s <source socket> -t <target socket> ...   run spiped (same flags)\n' +
  '       spiped-native spipe -t <target socket> -k <key file> ...           run spipe (same flags)\n' +
  '       spiped-native run <config file>       start every tunnel a TOML file lists\n' +
  '       spiped-native keygen [<key file>]     write 32 random bytes (mode 0600; stdout if no file)\n' +
  '       spiped-native doctor [--key <file>]   show the crypto backend, CPU features and versions\n' +
  '       spiped-native --help | --version\n' +
  '\n' +
  SPIPED_USAGE +
  '  beyond the reference: -k up to 16 times with -d, --reload-on-sighup, --log-connections,\n' +
  '    --metrics <address>, --proxy-protocol v1|v2, -s systemd: | -s systemd:<name>\n' +
  '\n' +
  SPIPE_USAGE;
