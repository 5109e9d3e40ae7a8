import { describe, expect, it } from 'vitest';
import type { ManifestFile } from '../../src/providers/manifest-files.js';
import { ManifestStore, parseManifestFile } from '../../src/providers/manifest-files.js';

/**
 * A build after an edit of one file among N, told which file changed (as the file provider tells
 * it), looks at that file alone: how many files it reads does not grow with N, and the lists of
 * kinds the edit did not touch are the last snapshot's, not copies.
 */

const backendFile = (i: number, consecutive5xx = 5): string =>
  [
    `apiVersion: v1\nkind: Secret\nmetadata: {name: key-${i}, namespace: ai}\nstringData: {Authorization: k${i}}\n`,
    `apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata: {name: chat-${i}, namespace: ai}\nspec:\n  type: AI\n  ai:\n    llm:\n      provider: {openai: {model: gpt-4o, authToken: {kind: SecretRef, secretRef: {name: key-${i}}}}}\n  outlierDetection: {consecutive5xx: ${consecutive5xx}}\n`,
  ].join('---\n');

const nameOf = (i: number): string => `chat-${String(i).padStart(5, '0')}.yaml`;

/** Counts every read of a file of the list and of a property of each file. */
function counted(files: ManifestFile[]): { files: ManifestFile[]; reads: () => number } {
  let reads = 0;
  const watched = files.map(
    (f) =>
      new Proxy(f, {
        get(target, p, receiver) {
          reads++;
          return Reflect.get(target, p, receiver) as unknown;
        },
      }),
  );
  const list = new Proxy(watched, {
    get(target, p, receiver) {
      if (typeof p === 'string' && /^\d+$/.test(p)) reads++;
      return Reflect.get(target, p, receiver) as unknown;
    },
  });
  return { files: list, reads: () => reads };
}

/** Builds N one-Backend files, then edits one and builds again told of it: the files that build read. */
function editAmong(n: number): { reads: number; store: ManifestStore; before: ReturnType<ManifestStore['build']>; after: ReturnType<ManifestStore['build']>; files: ManifestFile[] } {
  const files: ManifestFile[] = [];
  for (let i = 0; i < n; i++) files.push({ name: nameOf(i), documents: parseManifestFile(nameOf(i), backendFile(i)) });
  const store = new ManifestStore();
  const before = store.build(files);
  const at = Math.floor(n / 2);
  const edited: ManifestFile = { name: nameOf(at), documents: parseManifestFile(nameOf(at), backendFile(at, 9), undefined, files[at]?.documents) };
  files[at] = edited;
  const watched = counted(files);
  const after = store.build(watched.files, new Map([[edited.name, edited]]));
  return { reads: watched.reads(), store, before, after, files };
}

describe('ManifestStore, told which file changed', () => {
  it('reads as many files after an edit of one among 200 as among 4,000', () => {
    const small = editAmong(200);
    const large = editAmong(4_000);
    expect(large.reads).toBe(small.reads);
    // The edited file, and none of the rest.
    expect(large.reads).toBeLessThan(20);
  });

  it('serves the edit, hands over the untouched kinds\' lists as they were, and gives what a build of every file gives', () => {
    const { before, after, files } = editAmong(300);
    expect(before.problems).toEqual([]);
    expect(before.inputs.backends).toHaveLength(300);
    const edited = after.inputs.backends.find((b) => b.metadata.name === 'chat-150');
    expect(edited?.spec.outlierDetection?.consecutive5xx).toBe(9);
    expect(edited?.metadata.generation).toBe(2);
    expect(after.inputs.backends).not.toBe(before.inputs.backends);
    expect(before.inputs.backends.find((b) => b.metadata.name === 'chat-150')?.spec.outlierDetection?.consecutive5xx).toBe(5);
    expect(after.inputs.secrets).toBe(before.inputs.secrets);
    expect(after.inputs.httpRoutes).toBe(before.inputs.httpRoutes);

    // A store that reads every file at both builds gives the same snapshot.
    const full = new ManifestStore();
    const original = files.map((f, i) => (i === 150 ? { name: f.name, documents: parseManifestFile(f.name, backendFile(150)) } : { name: f.name, documents: parseManifestFile(f.name, backendFile(i)) }));
    full.build(original);
    const again = full.build(original.map((f, i) => (i === 150 ? { name: f.name, documents: parseManifestFile(f.name, backendFile(150, 9), undefined, f.documents) } : f)));
    expect(JSON.stringify(after)).toBe(JSON.stringify(again));
  });

  it('forgets a file told gone, and builds every file when told of one it never had', () => {
    const { store, files } = editAmong(50);
    const gone = files[10] as ManifestFile;
    const withoutIt = files.filter((f) => f !== gone);
    const afterGone = store.build(withoutIt, new Map([[gone.name, undefined]]));
    expect(afterGone.inputs.backends.map((b) => b.metadata.name)).not.toContain('chat-10');
    expect(afterGone.inputs.backends).toHaveLength(49);
    const added: ManifestFile = { name: 'zz-new.yaml', documents: parseManifestFile('zz-new.yaml', backendFile(999)) };
    const afterNew = store.build([...withoutIt, added], new Map([[added.name, added]]));
    expect(afterNew.inputs.backends.map((b) => b.metadata.name)).toContain('chat-999');
    expect(afterNew.inputs.backends).toHaveLength(50);
  });
});
