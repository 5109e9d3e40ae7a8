import { describe, expect, it } from 'vitest';
import type { ManifestFile } from '../../src/providers/manifest-files.js';
import { ManifestStore, parseManifestFile } from '../../src/providers/manifest-files.js';

/**
 * The file provider builds its snapshots with ManifestStore.buildYielding, which gives the event
 * loop a turn while a large first build runs: the snapshot must be the one build makes, and
 * timers must fire during the build.
 */

const secret = (i: number): string => `apiVersion: v1\nkind: Secret\nmetadata:\n  name: key-${i}\n  namespace: ai\nstringData:\n  Authorization: Bearer sk-${i}\n`;
const backend = (i: number): string =>
  `apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: chat-${i}\n  namespace: ai\nspec:\n  ai:\n    llm:\n      provider:\n        openai:\n          authToken: {kind: SecretRef, secretRef: {name: key-${i}}}\n`;
// One broken Backend and one object defined twice: problems and duplicates come out the same too.
const broken = `apiVersion: switchyard.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: broken\n  namespace: ai\nspec:\n  ai: {}\n`;

function files(n: number): ManifestFile[] {
  const a: string[] = [];
  for (let i = 0; i < n; i++) a.push(secret(i), backend(i));
  a.push(broken, secret(0));
  const text = a.map((d) => `---\n${d}`).join('');
  return [{ name: 'a.yaml', documents: parseManifestFile('a.yaml', text) }, { name: 'b.yaml', documents: parseManifestFile('b.yaml', `---\n${secret(1)}`) }];
}

describe('ManifestStore.buildYielding', () => {
  it('makes the snapshot build makes, first and after an edit', async () => {
    const first = files(3000);
    const sync = new ManifestStore();
    const yielding = new ManifestStore();
    const expected = sync.build(first);
    const got = await yielding.buildYielding(first, undefined, 0);
    expect(got).toEqual(expected);
    expect(got.inputs.backends).toHaveLength(3000);
    expect(got.problems.length).toBeGreaterThan(0);

    const edited: ManifestFile[] = [{ name: 'a.yaml', documents: parseManifestFile('a.yaml', `---\n${secret(0)}---\n${backend(0)}`) }];
    expect(await yielding.buildYielding(edited, undefined, 0)).toEqual(sync.build(edited));
  });

  it('lets timers run while it builds many objects', async () => {
    const input = files(5000);
    const store = new ManifestStore();
    let ticks = 0;
    let building = true;
    const tick = (): void => {
      if (!building) return;
      ticks++;
      setImmediate(tick);
    };
    setImmediate(tick);
    const snapshot = await store.buildYielding(input, undefined, 0);
    building = false;
    expect(snapshot.inputs.backends).toHaveLength(5000);
    // 10,000 objects in steps of 1,024, each step followed by a turn of the event loop.
    expect(ticks).toBeGreaterThanOrEqual(9);
  });
});
