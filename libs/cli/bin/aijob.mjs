#!/usr/bin/env node
// The `aijob` command (built into ../dist by `npm run build`).
import '../dist/main.js';
