import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The packages a fresh process loads once it has imported `modules` and run `then` (which sees
 * them as `loaded[i]`): each costs the process resident memory for as long as it runs (issue 9).
 */
function packagesLoadedBy(modules: string[], then = ''): string[] {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = new Set();
    registerHooks({ resolve(specifier, context, next) {
      const r = next(specifier, context);
      const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(r.url);
      if (m) seen.add(m[1]);
      return r;
    } });
    const loaded = [];
    for (const m of ${JSON.stringify(modules)}) loaded.push(await import(m));
    ${then};
    process.stdout.write(JSON.stringify([...seen].sort()));
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`node exited ${String(r.status)}: ${r.stderr}`);
  return JSON.parse(r.stdout) as string[];
}

/**
 * Whether a fresh process has loaded Node's bundled undici (fetch, WebSocket) once it has imported
 * `modules`: an ES module import of node:http reads every export, and its WebSocket getters load
 * undici, about 1 MB of serve's resident memory for as long as it runs (issue 9).
 */
function loadsUndici(modules: string[]): boolean {
  const script = `
    for (const m of ${JSON.stringify(modules)}) await import(m);
    process.stdout.write(JSON.stringify(process.moduleLoadList.includes('NativeModule internal/deps/undici/undici')));
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`node exited ${String(r.status)}: ${r.stderr}`);
  return JSON.parse(r.stdout) as boolean;
}

describe('what serve loads', () => {
  it('serve and the CLI leave Node\'s bundled undici unloaded; an ES module import of node:http would load it', () => {
    expect(loadsUndici([join(ROOT, 'src/cli/main.ts'), join(ROOT, 'src/app/serve.ts')])).toBe(false);
    // The same probe sees undici where it is loaded: it can tell.
    expect(loadsUndici(['node:http'])).toBe(true);
  });
});

describe('what the AI extension loads', () => {
  it('the CLI and the extension load neither the schemas (zod) nor the YAML readers; the translate path loads the schemas', () => {
    const extension = packagesLoadedBy([join(ROOT, 'src/cli/main.ts'), join(ROOT, 'src/ai-extension/server.ts')]);
    expect(extension).toContain('@grpc/grpc-js');
    expect(extension).not.toContain('zod');
    expect(extension).not.toContain('yaml');
    expect(extension).not.toContain('js-yaml');
    // The same probe sees them where they are used: it can tell.
    const translate = packagesLoadedBy([join(ROOT, 'src/pipeline.ts'), join(ROOT, 'src/providers/file.ts')]);
    expect(translate).toContain('zod');
  });
});

describe('what reading manifests loads', () => {
  const manifests = join(ROOT, 'src/providers/manifest-files.ts');
  const read = (text: string): string => `if (loaded[0].parseManifestFile('m.yaml', ${JSON.stringify(text)}).length !== 1) throw new Error('not one document')`;

  it('block-style manifests are read without either YAML package; each loads once a document needs it', () => {
    const imported = packagesLoadedBy([manifests]);
    expect(imported).not.toContain('js-yaml');
    expect(imported).not.toContain('yaml');
    const block = packagesLoadedBy([manifests], read('apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\n'));
    expect(block).not.toContain('js-yaml');
    expect(block).not.toContain('yaml');
    // Flow style is beyond the block reader: js-yaml reads it.
    const flow = packagesLoadedBy([manifests], read('apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n'));
    expect(flow).toContain('js-yaml');
    expect(flow).not.toContain('yaml');
    // A syntax error is worded (with its line) by the yaml package.
    expect(packagesLoadedBy([manifests], read('apiVersion: v1\nkind: [Secret\n'))).toContain('yaml');
  });
});
