#!/usr/bin/env node
// The published entry point: runs the compiled CLI (npm run build / prepare writes dist/).
import { fileURLToPath } from 'node:url';
import { restartWithMemorySettings } from '../dist/cli/memory-settings.js';

// serve, controller and ai-extension first restart this same process with the memory settings
// that Node and glibc read only at start (src/cli/memory-settings.ts); it loads nothing else.
restartWithMemorySettings(fileURLToPath(import.meta.url));

const { main } = await import('../dist/cli/main.js');
main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => { console.error(err instanceof Error ? err.message : String(err)); process.exitCode = 1; },
);
