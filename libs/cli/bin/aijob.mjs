#!/usr/bin/env node
// The `aijob` command (built into ../dist by `npm run build`).
import { main } from '../dist/main.js';

process.exitCode = await main(process.argv.slice(2));
