import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closest, editDistance } from '../../src/cli/flags.js';
import { EXPECTED_ENVOY_VERSION } from '../../src/cli/version.js';
import { REPO_ROOT as ROOT, runSwitchyard as cli } from '../support/cli-run.js';

/** The CLI as a user runs it: its own process, its exit code, its stdout and stderr. */

let dir = '';
let taken: Server;
let takenPort = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-'));
  taken = createServer();
  await new Promise<void>((resolve) => taken.listen({ port: 0, host: '0.0.0.0' }, () => resolve()));
  const address = taken.address();
  takenPort = typeof address === 'object' && address !== null ? address.port : 0;
});

afterAll(async () => {
  await new Promise<void>((resolve) => taken.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe('switchyard version', () => {
  it('prints the package, Node and expected Envoy versions, as a command and as --version', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const args of [['version'], ['--version']]) {
      const r = await cli(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`switchyard ${pkg.version}\nnode ${process.versions.node}\nenvoy ${EXPECTED_ENVOY_VERSION} (expected by this release)\n`);
    }
    const json = await cli(['version', '-o', 'json']);
    expect(JSON.parse(json.stdout)).toEqual({ switchyard: pkg.version, node: process.versions.node, envoy: EXPECTED_ENVOY_VERSION });
  });

  it('expects the Envoy that scripts/ensure-envoy.sh installs', () => {
    const script = readFileSync(join(ROOT, 'scripts/ensure-envoy.sh'), 'utf8');
    expect(/ENVOY_VERSION:-([0-9.]+)/.exec(script)?.[1]).toBe(EXPECTED_ENVOY_VERSION);
  });
});

describe('--help on every command', () => {
  it.each(['serve', 'controller', 'translate', 'bootstrap', 'ai-extension', 'status', 'version'])('%s --help and -h print that command\'s usage, exit 0', async (command) => {
    const [long, short] = await Promise.all([cli([command, '--help']), cli([command, '-h'])]);
    for (const r of [long, short]) {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage:\\n  switchyard ${command} `));
      // Only this command: no other command's synopsis.
      expect(r.stdout.match(/^ {2}switchyard /gm)).toHaveLength(1);
    }
  });
});

describe('usage errors: exit 2, name the flag, suggest the closest one', () => {
  it('an unknown flag gets "did you mean" and the command\'s synopsis', async () => {
    const r = await cli(['serve', '--xds-prot', '1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('switchyard: serve: unknown flag --xds-prot; did you mean --xds-port?');
    // The synopsis, all its lines, without the description.
    expect(r.stderr).toContain('Usage:\n  switchyard serve --config PATH');
    expect(r.stderr).toContain('[--load-report-interval 2s] [--health-window 1m] [--otlp-endpoint URL]\n');
    expect(r.stderr).toContain('[--limits-redis redis://HOST:PORT] [--no-ai-warmup]\nRun');
    expect(r.stderr).not.toContain('Watch PATH');
    expect(r.stderr).toContain('Run "switchyard serve --help" for details.');
    expect(r.stdout).toBe('');
  });

  it('an unknown command gets "did you mean"', async () => {
    const r = await cli(['sevre']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "sevre"; did you mean "serve"?');
  });

  it('a flag without its value, and a stray argument, are named', async () => {
    const [missing, stray] = await Promise.all([cli(['bootstrap', '--xds']), cli(['translate', 'examples'])]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('bootstrap: --xds needs a value');
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain('translate: unexpected argument "examples"');
  });

  it('an --otlp-endpoint that is not an http(s) URL is named with the fix, on every command that takes it', async () => {
    const runs = await Promise.all([
      cli(['serve', '--config', join(ROOT, 'examples'), '--otlp-endpoint', 'collector:4317']),
      cli(['controller', '--otlp-endpoint', 'grpc://collector:4317']),
      cli(['ai-extension', '--xds', '127.0.0.1:1', '--otlp-endpoint', 'http://collector:4318/v1/traces']),
    ]);
    for (const r of runs) expect(r.code).toBe(2);
    expect(runs[0]?.stderr).toContain('--otlp-endpoint "collector:4317": the scheme must be http or https (OTLP over gRPC)');
    expect(runs[1]?.stderr).toContain('--otlp-endpoint "grpc://collector:4317": the scheme must be http or https');
    expect(runs[2]?.stderr).toContain('OTLP/gRPC takes no path; give only http://HOST:PORT');
  });

  it('a --warmup-envoy-admin that is not http://HOST:PORT is named with the fix', async () => {
    const r = await cli(['ai-extension', '--xds', '127.0.0.1:1', '--warmup-envoy-admin', '127.0.0.1:19000']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--warmup-envoy-admin 127.0.0.1:19000: give the admin address of the Envoy beside this extension as http://HOST:PORT');
  });

  it('a --warmup-envoys-dir that is not a directory, or given with --warmup-envoy-admin, is named with the fix', async () => {
    const missing = await cli(['ai-extension', '--xds', '127.0.0.1:1', '--warmup-envoys-dir', '/nonexistent/state/envoy']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--warmup-envoys-dir /nonexistent/state/envoy: no such directory; give the envoy/ folder of the state directory of `switchyard controller --infrastructure host`');
    const both = await cli(['ai-extension', '--xds', '127.0.0.1:1', '--warmup-envoys-dir', '/tmp', '--warmup-envoy-admin', 'http://127.0.0.1:19000']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--warmup-envoys-dir (every Envoy a controller runs here) excludes --warmup-envoy-admin (one Envoy)');
  });

  it('--listen-socket with --port or --host, or at a path that exists, is named with the fix', async () => {
    const both = await cli(['ai-extension', '--xds', '127.0.0.1:1', '--listen-socket', '/tmp/x.sock', '--port', '0']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--listen-socket (ext_proc on a Unix socket) excludes --port and --host (ext_proc on TCP); give one of them');
    const taken = await cli(['ai-extension', '--xds', '127.0.0.1:1', '--listen-socket', ROOT, '--metrics-port', '0']);
    expect(taken.code).toBe(2);
    expect(taken.stderr).toContain(`--listen-socket ${ROOT}: the path exists; remove it if no extension serves there, or give another path`);
  });

  it('suggests nothing for a word far from every flag', () => {
    expect(closest('--colour-scheme', ['--xds-port', '--config'])).toBeUndefined();
    expect(closest('--metric-port', ['--xds-port', '--metrics-port'])).toBe('--metrics-port');
    expect(editDistance('sevre', 'serve')).toBe(1);
  });
});

describe('runtime errors: exit 1, one line naming the flag or file and the fix', () => {
  it.each([
    ['--xds-port', ['--metrics-port', '0', '--ai-extension-port', '0']],
    ['--metrics-port', ['--xds-port', '0', '--ai-extension-port', '0']],
  ])('serve with a taken %s', async (flag, others) => {
    const r = await cli(['serve', '--config', join(ROOT, 'examples'), flag, String(takenPort), ...others]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`switchyard: ${flag} ${takenPort}: address 0.0.0.0:${takenPort} is in use (another switchyard or Envoy?); pick another port with ${flag}\n`);
    expect(r.stdout).toBe('');
  });

  it('serve with a taken --ai-extension-port', async () => {
    const r = await cli(['serve', '--config', join(ROOT, 'examples'), '--xds-port', '0', '--metrics-port', '0', '--ai-extension-port', String(takenPort), '--ai-extension-address', '0.0.0.0', '--state-dir', join(dir, 'state')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`switchyard: --ai-extension-port ${takenPort}: address 0.0.0.0:${takenPort} is in use (another switchyard or Envoy?); pick another port with --ai-extension-port\n`);
  });

  it('controller with a taken --metrics-port, before it talks to the API server', async () => {
    const kubeconfig = join(dir, 'unreachable-kubeconfig');
    writeFileSync(kubeconfig, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`);
    const r = await cli(['controller', '--kubeconfig', kubeconfig, '--xds-port', '0', '--metrics-port', String(takenPort)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`switchyard: --metrics-port ${takenPort}: address 0.0.0.0:${takenPort} is in use (another switchyard or Envoy?); pick another port with --metrics-port\n`);
  });

  it('ai-extension with a taken --port', async () => {
    const r = await cli(['ai-extension', '--xds', '127.0.0.1:1', '--port', String(takenPort)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`switchyard: --port ${takenPort}: address 0.0.0.0:${takenPort} is in use (another switchyard or Envoy?); pick another port with --port\n`);
  });

  it('a missing configuration path is named before anything starts', async () => {
    const missing = join(dir, 'nothing-here');
    const r = await cli(['serve', '--config', missing, '--xds-port', '0', '--metrics-port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`switchyard: configuration path ${missing} does not exist: give a manifest file or a directory of them\n`);
  });

  it('a malformed kubeconfig is named with what is wrong', async () => {
    const file = join(dir, 'broken-kubeconfig');
    writeFileSync(file, 'apiVersion: v1\nkind: Config\nclusters: [\n');
    const r = await cli(['controller', '--kubeconfig', file, '--xds-port', '0', '--metrics-port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^switchyard: kubeconfig ${file} \\(from --kubeconfig\\) is not a valid kubeconfig: .+; fix it or point --kubeconfig at another file\\n$`));
  });

  it('a kubeconfig that is a directory, or has no current context, says so', async () => {
    const empty = join(dir, 'empty-kubeconfig');
    writeFileSync(empty, 'apiVersion: v1\nkind: Config\n');
    const [isDir, noContext] = await Promise.all([cli(['controller', '--kubeconfig', dir]), cli(['controller', '--kubeconfig', empty])]);
    expect(isDir.code).toBe(1);
    expect(isDir.stderr).toContain(`kubeconfig ${dir} (from --kubeconfig) is a directory, not a kubeconfig file`);
    expect(noContext.code).toBe(1);
    expect(noContext.stderr).toContain(`kubeconfig ${empty} has no current-context: set one (kubectl config use-context NAME)`);
  });
});

describe('memory', () => {
  // On a machine without a free core (CI beside other work) it says it waits for one instead.
  it('serve, once quiet after its load, compacts V8\'s heap or waits for a free core to (logged at debug), and still stops cleanly', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'serve', '--config', join(ROOT, 'examples'), '--no-envoy', '--no-ai-extension', '--log-level', 'debug',
        '--xds-port', '0', '--xds-host', '127.0.0.1', '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--state-dir', join(dir, 'compaction-state')],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    const compacted = new Promise<string>((resolve) => {
      const take = (c: Buffer): void => {
        output += c.toString('utf8');
        // A small heap is compacted as soon as the start is over; otherwise at a quiet idle check.
        const line = output.split('\n').find((l) => l.includes('"msg":"idle: V8 heap compact') || l.includes('"msg":"start over: V8 heap compacted"'));
        if (line !== undefined) resolve(line);
      };
      child.stdout.on('data', take);
      child.stderr.on('data', take);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const line = JSON.parse(await compacted) as { msg: string; heapBeforeMB?: number; heapAfterMB?: number; runnable?: number; cores?: number };
    if (line.msg === 'idle: V8 heap compacted' || line.msg === 'start over: V8 heap compacted') expect(line.heapAfterMB).toBeLessThan(line.heapBeforeMB ?? 0);
    else {
      expect(line.msg).toBe('idle: V8 heap compaction waits for a free core');
      expect(line.runnable).toBeGreaterThan(line.cores ?? Number.POSITIVE_INFINITY);
    }
    child.kill('SIGTERM');
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('close', (c, s) => resolve([c, s])));
    clearTimeout(timer);
    expect({ code, signal }, output.slice(-1_000)).toEqual({ code: 0, signal: null });
  });
});

describe('signals', () => {
  it('a SIGTERM that arrives while serve is still starting stops it cleanly (exit 0), not by the signal', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'serve', '--config', join(ROOT, 'examples'), '--no-envoy', '--no-ai-extension',
        '--xds-port', '0', '--xds-host', '127.0.0.1', '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--state-dir', join(dir, 'signal-state')],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    // The first log line comes before serve is up: the signal lands during start-up.
    child.stderr.once('data', () => child.kill('SIGTERM'));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('close', (c, s) => resolve([c, s])));
    clearTimeout(timer);
    expect({ code, signal }, stderr.slice(-1_000)).toEqual({ code: 0, signal: null });
    expect(stderr).toContain('"msg":"shutting down"');
  });
});
