import { parseManifest, type KnownObject, type ParseResult, type Problem } from '../../api/manifest.js';
import { addToInputs, emptyInputs, noteUnknownFields, type InvalidObject } from '../../translate/inputs.js';
import type { Snapshot } from '../manifest-files.js';
import type { ReducedObject } from './reduce.js';

interface Parsed {
  content: string;
  result: ParseResult;
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Turns the objects the informers hold into Inputs snapshots, validating each with the same zod
 * schemas as file mode. A version that fails validation becomes an InvalidObject with Problems
 * naming the object and field, and, when an earlier version of the object was valid, that version
 * keeps being served (as in file mode: a bad edit does not take a working Backend offline).
 * Each object version is validated once.
 */
export class SnapshotBuilder {
  private parsed = new Map<string, Parsed>();
  private lastGood = new Map<string, KnownObject>();

  build(objects: readonly { kind: string; object: ReducedObject }[]): Snapshot {
    const inputs = emptyInputs();
    const problems: Problem[] = [];
    const invalid: InvalidObject[] = [];
    const parsed = new Map<string, Parsed>();
    const lastGood = new Map<string, KnownObject>();
    const ordered = objects
      .map((o) => ({ key: `${o.kind}/${o.object.namespace}/${o.object.name}`, object: o.object }))
      .sort((a, b) => byCodeUnits(a.key, b.key));
    for (const { key, object } of ordered) {
      let p = this.parsed.get(key);
      if (p?.content !== object.content) p = { content: object.content, result: parseManifest(object.object) };
      parsed.set(key, p);
      const r = p.result;
      if (r.ok === true) {
        addToInputs(inputs, r.object);
        // Served as they are; the problems are logged and become Warning Events (translate).
        problems.push(...r.warnings);
        noteUnknownFields(inputs, r.id, r.warnings);
        lastGood.set(key, r.object);
        continue;
      }
      if (r.ok === 'ignored' || !r.id) continue;
      problems.push(...r.problems);
      const good = this.lastGood.get(key);
      if (good) {
        addToInputs(inputs, good);
        lastGood.set(key, good);
      }
      const meta = object.object['metadata'];
      const generation = typeof meta === 'object' && meta !== null && 'generation' in meta && typeof meta.generation === 'number' ? meta.generation : undefined;
      invalid.push({ ...r.id, ...(generation !== undefined ? { generation } : {}), problems: r.problems, servingLastGood: good !== undefined });
    }
    // Deleted objects are forgotten: one created later under the same name starts afresh.
    this.parsed = parsed;
    this.lastGood = lastGood;
    inputs.invalid = invalid;
    return { inputs, problems };
  }
}
