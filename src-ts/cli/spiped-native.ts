#!/usr/bin/env node
// The `spiped-native` executable (spiped, plus spipe/keygen/doctor subcommands); see spiped-native-command.ts.
import { runSpipedNative } from './spiped-native-command.js';

process.exit(await runSpipedNative(process.argv.slice(2)));
