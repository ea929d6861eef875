#!/usr/bin/env node
// The `spipe` executable (the client); everything is in spipe-command.ts.
import { runSpipe } from './spipe-command.js';

process.exit(await runSpipe(process.argv.slice(2)));
