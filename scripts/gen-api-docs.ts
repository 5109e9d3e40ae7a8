// Writes docs/api.md from the CRD schema (make docs; make crds too). test/unit/api-docs.test.ts fails when it drifts.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { API_DOCS_FILE, renderApiDocs } from '../src/api/api-docs.js';

mkdirSync(dirname(API_DOCS_FILE), { recursive: true });
writeFileSync(API_DOCS_FILE, renderApiDocs());
process.stdout.write(`wrote ${API_DOCS_FILE}\n`);
