/**
 * The controller image (make image) run as a container runtime would: its layers unpacked in order
 * into a root filesystem, the process started in new mount and PID namespaces chrooted into a
 * read-only view of it, with the image config's user, working directory, environment and
 * entrypoint. Proves the image carries everything the app loads (no host file leaks in) and runs
 * as 65532 the way the chart runs it.
 * Needs the image built (make test and make image-test build it first) and root (namespaces and
 * chroot): without either it fails, naming what is missing; it never skips.
 */
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const repo = resolve(import.meta.dirname, '../..');
const imageDir = process.env.IMAGE_OUT ?? join(repo, '.build/image');
const packageVersion = (JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }).version;
const tarball = join(imageDir, `switchyard-${packageVersion}.tar`);
const isRoot = process.getuid?.() === 0;

interface DockerManifestEntry { Config: string; RepoTags: string[]; Layers: string[] }
interface ImageConfig {
  architecture: string;
  os: string;
  config: {
    User?: string; Entrypoint?: string[]; Cmd?: string[]; Env?: string[]; WorkingDir?: string;
    ExposedPorts?: Record<string, object>;
  };
}

/** The last stage of deploy/Dockerfile: its instructions, continuation lines joined. */
function dockerfileFinalStage(): Array<{ op: string; arg: string }> {
  const text = readFileSync(join(repo, 'deploy/Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const stages = lines.map((l) => /^(\S+)\s+(.*)$/.exec(l)).filter((m) => m !== null).map((m) => ({ op: m[1]!.toUpperCase(), arg: m[2]! }));
  const from = stages.map((s) => s.op).lastIndexOf('FROM');
  return stages.slice(from + 1);
}

describe('the controller image', () => {
  let scratch = '';
  let rootfs = '';
  let config: ImageConfig;
  let manifest: DockerManifestEntry;

  /**
   * The image's entrypoint with ARGS as its user, in new mount + PID namespaces chrooted into a
   * read-only view of rootfs (the chart sets readOnlyRootFilesystem).
   */
  function run(args: string[], entrypoint = config.config.Entrypoint ?? []): SpawnSyncReturns<string> {
    const [user, group] = (config.config.User ?? '').split(':');
    const inNamespace = 'set -e; root=$1; wd=$2; user=$3; group=$4; shift 4; mount --bind "$root" "$root"; '
      + 'mount -o remount,bind,ro "$root"; exec unshare --root="$root" --wd="$wd" --setuid="$user" --setgid="$group" "$@"';
    return spawnSync('env', [
      '-i', ...(config.config.Env ?? []),
      'unshare', '--mount', '--pid', '--fork', '--kill-child', 'sh', '-c', inNamespace, 'sh',
      rootfs, config.config.WorkingDir ?? '/', user ?? '', group ?? user ?? '',
      ...entrypoint, ...args,
    ], { encoding: 'utf8', timeout: 60_000 });
  }

  beforeAll(() => {
    if (!isRoot) throw new Error('the image test runs the image in new namespaces and a chroot: run it as root (CI does)');
    if (!existsSync(tarball)) throw new Error(`no image at ${tarball}: run make image (make test builds it first)`);
    scratch = mkdtempSync(join(tmpdir(), 'switchyard-image-'));
    const unpacked = join(scratch, 'image');
    rootfs = join(scratch, 'rootfs');
    mkdirSync(unpacked);
    mkdirSync(rootfs);
    execFileSync('tar', ['-xf', tarball, '-C', unpacked]);
    const entries = JSON.parse(readFileSync(join(unpacked, 'manifest.json'), 'utf8')) as DockerManifestEntry[];
    expect(entries).toHaveLength(1);
    manifest = entries[0]!;
    config = JSON.parse(readFileSync(join(unpacked, manifest.Config), 'utf8')) as ImageConfig;
    for (const layer of manifest.Layers) {
      // Whiteouts would need a runtime's handling; the build never deletes across layers.
      const names = execFileSync('tar', ['-tzf', join(unpacked, layer)], { encoding: 'utf8', maxBuffer: 64 << 20 });
      expect(names.split('\n').filter((n) => /(^|\/)\.wh\./.test(n))).toEqual([]);
      // As root, tar keeps the layer's numeric owners and modes, as a runtime does.
      execFileSync('tar', ['-xzf', join(unpacked, layer), '-C', rootfs, '--numeric-owner']);
    }
    // What a runtime mounts over an image; the image itself ships no /proc or /dev.
    for (const dir of ['proc', 'dev']) mkdirSync(join(rootfs, dir), { recursive: true });
  }, 300_000);

  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('is the tagged linux/amd64 image the chart runs: non-root, node entrypoint, controller by default', () => {
    expect(manifest.RepoTags).toEqual([`ghcr.io/switchyard-dev/switchyard:${packageVersion}`]);
    expect(config.os).toBe('linux');
    expect(config.architecture).toBe('amd64');
    expect(config.config.User).toBe('65532:65532');
    expect(config.config.Entrypoint).toEqual(['node', '/app/bin/switchyard.js']);
    expect(config.config.Cmd).toEqual(['controller']);
    expect(config.config.Env).toContain('NODE_ENV=production');
  });

  it('is what deploy/Dockerfile describes: user, entrypoint, command, environment, ports, files', () => {
    const stage = dockerfileFinalStage();
    const one = (op: string): string => {
      const found = stage.filter((s) => s.op === op).map((s) => s.arg);
      expect(found, `deploy/Dockerfile's final stage has one ${op}`).toHaveLength(1);
      return found[0]!;
    };
    expect(one('USER')).toBe(config.config.User);
    expect(JSON.parse(one('ENTRYPOINT'))).toEqual(config.config.Entrypoint);
    expect(JSON.parse(one('CMD'))).toEqual(config.config.Cmd);
    expect(one('WORKDIR')).toBe(config.config.WorkingDir);
    expect(one('EXPOSE').split(/\s+/).map((p) => `${p}/tcp`).sort()).toEqual(Object.keys(config.config.ExposedPorts ?? {}).sort());
    for (const env of stage.filter((s) => s.op === 'ENV')) expect(config.config.Env).toContain(env.arg);
    const copied = stage.filter((s) => s.op === 'COPY').map((s) => s.arg.split(/\s+/).at(-1)!);
    expect(copied.length).toBeGreaterThan(5);
    for (const dest of copied) {
      const inImage = dest.startsWith('/') ? dest : join(config.config.WorkingDir ?? '/', dest);
      expect(existsSync(join(rootfs, inImage)), `${inImage} (COPY in deploy/Dockerfile) is not in the image`).toBe(true);
    }
    // And the other way round: nothing in /app that the Dockerfile does not put there.
    const fromDockerfile = copied.filter((d) => !d.startsWith('/')).flatMap((d) => (d === './' ? ['package.json', 'package-lock.json'] : [d.replace(/^\.\//, '')]));
    expect(readdirSync(join(rootfs, 'app')).sort()).toEqual([...new Set(fromDockerfile)].sort());
  });

  it('holds the app read-only for its user, a home owned by it, the CA bundle, and no shell', () => {
    expect(statSync(join(rootfs, 'home/nonroot')).uid).toBe(65532);
    for (const p of ['app', 'app/dist/cli/main.js', 'app/node_modules', 'usr/local/bin/node']) {
      const st = statSync(join(rootfs, p));
      expect(st.uid, p).toBe(0);
      expect(st.mode & 0o022, `${p} is writable by group or others`).toBe(0);
    }
    expect(readdirSync(join(rootfs, 'app/crds')).length).toBeGreaterThan(0);
    const bundle = readFileSync(join(rootfs, 'etc/ssl/certs/ca-certificates.crt'), 'utf8');
    expect(bundle.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0).toBeGreaterThan(100);
    expect(existsSync(join(rootfs, 'bin/sh'))).toBe(false);
    // Nothing the app does not run: the dev dependencies stay out.
    expect(existsSync(join(rootfs, 'app/node_modules/vitest'))).toBe(false);
    expect(existsSync(join(rootfs, 'app/node_modules/typescript'))).toBe(false);
  });

  it('runs the pinned Node from its own libraries, as uid and gid 65532', () => {
    const script = `let w = 'writable'; try { require('fs').writeFileSync('/app/x', ''); } catch (e) { w = e.code; }
      console.log(JSON.stringify([process.version, process.getuid(), process.getgid(), process.cwd(), w]))`;
    const probe = run(['-e', script], ['node']);
    expect(probe.stderr).toBe('');
    expect(probe.status).toBe(0);
    expect(JSON.parse(probe.stdout)).toEqual(['v24.22.3', 65532, 65532, '/app', 'EROFS']);
  });

  it('answers switchyard --help through the entrypoint', () => {
    const help = run(['--help']);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toContain('switchyard translate -f PATH');
  });

  it('starts the controller by default, which loads the Kubernetes client and says what it lacks', () => {
    const controller = run(config.config.Cmd ?? []);
    expect(controller.status).toBe(1);
    expect(controller.stderr).toContain('no Kubernetes configuration: pass --kubeconfig PATH');
  });

  it('translates the examples it carries into the same Envoy resources as this tree', () => {
    const inImage = run(['translate', '-f', '/app/examples', '-o', 'yaml']);
    expect(inImage.status, inImage.stderr).toBe(0);
    const out = parse(inImage.stdout) as { xds?: { clusters?: Array<{ name?: string }> } };
    const clusters = (out.xds?.clusters ?? []).map((c) => c.name);
    expect(clusters).toContain('backend/ai/chat');
    const here = execFileSync(join(repo, 'node_modules/.bin/tsx'), ['src/cli/main.ts', 'translate', '-f', 'examples', '-o', 'yaml'],
      { cwd: repo, encoding: 'utf8' });
    expect(inImage.stdout, 'the image is older than this tree: run make image').toBe(here);
  });
});
