// Writes crds/ from the zod schemas (make crds). test/unit/crd.test.ts fails when they drift.
import { writeFileSync } from 'node:fs';
import { renderBackendCrd, BACKEND_CRD_FILE } from '../src/api/crd-file.js';

writeFileSync(BACKEND_CRD_FILE, renderBackendCrd());
process.stdout.write(`wrote ${BACKEND_CRD_FILE}\n`);
