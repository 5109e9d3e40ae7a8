/**
 * The manifest store decides again only the objects of the files that changed. Over random edit
 * sequences (objects defined twice, in one file or two; invalid versions; half-saved files;
 * files removed), its snapshots must equal those of a store that decides everything every time
 * (the rules as written before the store became incremental): same objects served, same
 * generations, same problems in the same order. So must those of a store told which file changed
 * (the file provider's builds after an edit), which looks at that file alone.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { KnownObject, Problem } from '../../src/api/manifest.js';
import type { ManifestDocument, ManifestFile, Snapshot } from '../../src/providers/manifest-files.js';
import { canonicalJson, ManifestStore, parseManifestFile } from '../../src/providers/manifest-files.js';
import type { InvalidObject } from '../../src/translate/inputs.js';
import { addToInputs, emptyInputs, noteUnknownFields } from '../../src/translate/inputs.js';

type Defining = Extract<ManifestDocument, { state: 'object' | 'invalid' }>;
interface Kept {
  object: KnownObject;
  id: { kind: string; namespace: string; name: string };
  file: string;
  generation: number;
}

/** Every object decided from every file at every build. */
class FullStore {
  private served = new Map<string, Kept>();
  private readonly lastGood = new Map<string, Kept>();
  private readonly generations = new Map<string, { generation: number; content: string }>();

  build(files: readonly ManifestFile[]): Snapshot {
    const problems: Problem[] = [];
    const definitions = new Map<string, { doc: Defining; file: string }[]>();
    const broken = new Map<string, Problem[]>();
    for (const file of files) {
      if (file.readProblem) {
        problems.push(file.readProblem);
        broken.set(file.name, [file.readProblem]);
      }
      for (const doc of file.documents) {
        if (doc.state === 'ignored') continue;
        if (doc.state === 'syntax') {
          problems.push(...doc.problems);
          broken.set(file.name, [...(broken.get(file.name) ?? []), ...doc.problems]);
          continue;
        }
        if (doc.state === 'invalid') problems.push(...doc.problems);
        if (!doc.id) continue;
        const key = `${doc.id.kind}/${doc.id.namespace}/${doc.id.name}`;
        definitions.set(key, [...(definitions.get(key) ?? []), { doc, file: file.name }]);
      }
    }
    const winners = new Map<string, { doc: Defining; file: string }>();
    for (const [key, list] of definitions) {
      const first = list[0] as { doc: Defining; file: string };
      const incumbent = list.find((d) => d.file === this.served.get(key)?.file);
      const winner = list.length > 1 && incumbent ? incumbent : first;
      const why = winner === incumbent && list.length > 1 ? `the definition at ${winner.doc.source} was served first and keeps being served` : `the definition at ${first.doc.source} is used (first by file path, then document index)`;
      winners.set(key, winner);
      for (const other of list) {
        if (other === winner || !other.doc.id) continue;
        const { kind, namespace, name } = other.doc.id;
        problems.push({
          source: other.doc.source,
          object: other.doc.id,
          field: 'metadata.name',
          message: `${kind} ${namespace ? `${namespace}/` : ''}${name} is defined in both ${other.file} (${other.doc.source}) and ${winner.file} (${winner.doc.source}); ${why}, and this definition is ignored. Remove one of them or give it another name`,
        });
      }
    }
    const inputs = emptyInputs();
    const invalid: InvalidObject[] = [];
    const served = new Map<string, Kept>();
    for (const [key, { doc, file }] of winners) {
      const id = doc.id as Kept['id'];
      const prev = this.generations.get(key);
      const generation = doc.generation ?? (prev === undefined ? 1 : prev.content === doc.content ? prev.generation : prev.generation + 1);
      this.generations.set(key, { generation, content: doc.content });
      if (doc.state === 'object') {
        problems.push(...doc.warnings);
        noteUnknownFields(inputs, id, doc.warnings);
        const entry = { object: doc.object, id, file, generation };
        served.set(key, entry);
        this.lastGood.set(key, entry);
        continue;
      }
      const good = this.lastGood.get(key);
      if (good) served.set(key, good);
      invalid.push({ ...id, generation, problems: doc.problems, servingLastGood: good !== undefined });
    }
    for (const [key, prev] of this.served) {
      const fileProblems = broken.get(prev.file);
      if (!fileProblems || definitions.has(key)) continue;
      served.set(key, prev);
      invalid.push({ ...prev.id, generation: prev.generation, problems: fileProblems, servingLastGood: true });
    }
    for (const key of [...this.lastGood.keys()]) if (!served.has(key)) this.lastGood.delete(key);
    for (const key of [...this.generations.keys()]) if (!served.has(key) && !definitions.has(key)) this.generations.delete(key);
    this.served = served;
    for (const key of [...served.keys()].sort()) {
      const { object, generation } = served.get(key) as Kept;
      // Compared without the generation stamp, which is checked on its own.
      addToInputs(inputs, { kind: object.kind, value: { ...object.value, metadata: { ...object.value.metadata, generation } } } as KnownObject);
    }
    inputs.invalid = invalid.sort((a, b) => (`${a.kind}/${a.namespace}/${a.name}` < `${b.kind}/${b.namespace}/${b.name}` ? -1 : 1));
    return { inputs, problems };
  }
}

const FILES = ['a.yaml', 'b.yaml', 'c.yaml'] as const;
const secret = (name: string, value: string): string => `apiVersion: v1\nkind: Secret\nmetadata: {name: ${name}, namespace: ai}\nstringData: {Authorization: ${value}}\n`;
const documentText = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom('s1', 's2', 's3'), fc.constantFrom('k1', 'k2')).map(([n, v]) => secret(n, v)) },
  { weight: 1, arbitrary: fc.constantFrom('s1', 's2').map((n) => `apiVersion: v1\nkind: Secret\nmetadata: {name: ${n}, namespace: ai}\nstringData: [broken]\n`) },
  { weight: 1, arbitrary: fc.constant('apiVersion: v1\nkind: Secret\nmetadata: {name: s1\n') },
  { weight: 1, arbitrary: fc.constantFrom('r1', 'r2').map((n) => `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: ${n}, namespace: ai}\nspec: {parentRefs: [{name: gw}], typo: 1}\n`) },
  { weight: 1, arbitrary: fc.constant('kind: Unknown\nmetadata: {name: u}\n') },
);
const step = fc.record({ file: fc.constantFrom(...FILES), documents: fc.option(fc.array(documentText, { maxLength: 4 }), { freq: 6 }) });

/** What a snapshot says, without object identity or where generations are stamped. */
function comparable(snapshot: Snapshot): unknown {
  return JSON.parse(canonicalJson({ inputs: snapshot.inputs, problems: snapshot.problems })) as unknown;
}

describe('ManifestStore, incrementally', () => {
  it('gives the snapshots of a store that decides every object every time', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 12 }), (steps) => {
        const incremental = new ManifestStore();
        const told = new ManifestStore();
        const full = new FullStore();
        // Each store gets documents of its own: stamping a generation writes into the parsed object.
        const texts = new Map<string, string>();
        const parsedFor = [new Map<string, ManifestDocument[]>(), new Map<string, ManifestDocument[]>(), new Map<string, ManifestDocument[]>()];
        const givenTold = new Map<string, ManifestFile>();
        for (const { file, documents } of steps) {
          if (documents === null) texts.delete(file);
          else texts.set(file, documents.join('---\n'));
          const filesFor = (parsed: Map<string, ManifestDocument[]>): ManifestFile[] =>
            FILES.filter((f) => texts.has(f)).map((name) => {
              let docs = parsed.get(name);
              if (name === file || docs === undefined) {
                docs = parseManifestFile(name, texts.get(name) ?? '', undefined, docs);
                parsed.set(name, docs);
              }
              return { name, documents: docs };
            });
          const [mine, theirs, toldParsed] = parsedFor as [Map<string, ManifestDocument[]>, Map<string, ManifestDocument[]>, Map<string, ManifestDocument[]>];
          for (const parsed of parsedFor) for (const name of [...parsed.keys()]) if (!texts.has(name)) parsed.delete(name);
          const expected = comparable(full.build(filesFor(theirs)));
          expect(comparable(incremental.build(filesFor(mine)))).toEqual(expected);
          // The same ManifestFile for a file left as it was, as the file provider hands over.
          const toldFiles = filesFor(toldParsed).map((f) => {
            const given = givenTold.get(f.name);
            return given !== undefined && given.documents === f.documents ? given : f;
          });
          givenTold.clear();
          for (const f of toldFiles) givenTold.set(f.name, f);
          const changed = new Map([[file, toldFiles.find((f) => f.name === file)]]);
          expect(comparable(told.build(toldFiles, changed))).toEqual(expected);
        }
      }),
      { numRuns: 300 },
    );
  });
});
