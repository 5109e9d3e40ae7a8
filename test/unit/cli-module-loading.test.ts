import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

/** Module code that adds to `seen` the name of every package a module of the process resolves from node_modules. */
const RECORD_PACKAGES = `
    import { registerHooks } from 'node:module';
    const seen = new Set();
    registerHooks({ resolve(specifier, context, next) {
      const r = next(specifier, context);
      const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(r.url);
      if (m) seen.add(m[1]);
      return r;
    } });`;

/**
 * The packages a fresh process loads once it has imported `modules` and run `then` (which sees
 * them as `loaded[i]`): each costs the process resident memory for as long as it runs (issue 9).
 */
function packagesLoadedBy(modules: string[], then = ''): string[] {
  const script = `
    ${RECORD_PACKAGES}
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

describe('what each CLI command loads', () => {
  // Loaded before the CLI (node --import): records every package a module of the process resolves
  // and prints the list on stderr as the process exits.
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-loads-'));
  const hook = join(dir, 'record-packages.mjs');
  writeFileSync(hook, `
    ${RECORD_PACKAGES}
    process.on('exit', () => process.stderr.write('packages: ' + JSON.stringify([...seen].sort()) + '\\n'));
  `);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function packagesOf(stderr: string): string[] {
    const line = stderr.split('\n').find((l) => l.startsWith('packages: '));
    if (line === undefined) throw new Error(`no package list on stderr: ${stderr}`);
    return JSON.parse(line.slice('packages: '.length)) as string[];
  }

  function run(args: string[]): { status: number | null; stdout: string; packages: string[] } {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', hook, join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, encoding: 'utf8' });
    return { status: r.status, stdout: r.stdout, packages: packagesOf(r.stderr) };
  }

  /** A loopback port nothing listens on: an Envoy admin API that is gone. */
  async function closedPort(): Promise<number> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    return port;
  }

  it('the drain sidecar serves /envoy/drained without loading @grpc/grpc-js', async () => {
    const admin = `http://127.0.0.1:${await closedPort()}`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--import', hook, join(ROOT, 'src/cli/main.ts'), 'drain-sidecar', '--admin', admin, '--port', '0', '--host', '127.0.0.1'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const port = await new Promise<number>((resolve, reject) => {
        // Its start line (the log is on stderr) says which port it took.
        const check = (): void => {
          const m = /"port":(\d+),"envoyAdmin"/.exec(stderr);
          if (m) resolve(Number(m[1]));
        };
        child.stderr.on('data', check);
        void exited.then((code) => reject(new Error(`drain-sidecar exited ${String(code)} before serving: ${stderr}`)));
        // Within the test's time, so that the finally below still stops the process.
        setTimeout(() => reject(new Error(`drain-sidecar did not say its port within 30 s: ${stderr}`)), 30_000).unref();
      });
      const res = await fetch(`http://127.0.0.1:${port}/envoy/drained`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('gone\n');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    const packages = packagesOf(stderr);
    expect(packages).toContain('pino');
    expect(packages).not.toContain('@grpc/grpc-js');
    expect(packages).not.toContain('prom-client');
    expect(packages).not.toContain('zod');
  });

  it('envoy-drain, version and help load no @grpc/grpc-js; a bootstrap with xDS TLS does (the probe can tell)', async () => {
    // A preStop: it needs no package at all.
    const drain = run(['envoy-drain', '--admin', `http://127.0.0.1:${await closedPort()}`, '--drain-time', '1s']);
    expect(drain.status).toBe(0);
    expect(drain.packages).toEqual([]);
    for (const args of [['version'], ['--help'], ['envoy-drain', '--help']]) {
      const r = run(args);
      expect(r.status).toBe(0);
      expect(r.packages).toEqual([]);
    }
    const tls = run(['bootstrap', '--xds', 'controller:18000', '--node-id', 'n', '--xds-tls-dir', '/etc/switchyard/xds-tls']);
    expect(tls.status).toBe(0);
    expect(tls.stdout).toContain('/etc/switchyard/xds-tls/ca.crt');
    expect(tls.packages).toContain('@grpc/grpc-js');
    // Without TLS, no gRPC.
    expect(run(['bootstrap', '--xds', 'controller:18000', '--node-id', 'n']).packages).not.toContain('@grpc/grpc-js');
  });
});
