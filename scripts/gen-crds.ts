// Writes crds/ from the zod schemas (make crds). test/unit/crd.test.ts fails when they drift.
import { writeFileSync } from 'node:fs';
import { BACKEND_CRD_FILE, CHART_CRD_FILE, renderBackendCrd } from '../src/api/crd-file.js';

for (const file of [BACKEND_CRD_FILE, CHART_CRD_FILE]) {
  writeFileSync(file, renderBackendCrd());
  process.stdout.write(`wrote ${file}\n`);
}
