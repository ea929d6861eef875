#!/usr/bin/env node
// The `spiped` executable (the daemon); everything is in spiped-command.ts.
import { runSpiped } from './spiped-command.js';

process.exit(await runSpiped(process.argv.slice(2)));
