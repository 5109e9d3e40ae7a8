// Preloaded into serve by bench/serve-memory.ts (node --import; it survives bin/switchyard.js
// restarting itself, an IPC channel would not). On SIGUSR2 it reads the request in
// $SERVE_MEMORY_PROBE/request.json and answers in response.json: {cmd: 'stats', gc} (gc: true for a
// full GC, 'compact' for V8's last-resort one that also moves objects and gives pages back) gets V8's heap
// statistics per space, process.memoryUsage() and the CPU used so far; {cmd: 'snapshot', file}
// writes a heap snapshot there. With SERVE_MEMORY_ALLOCATIONS set, V8's sampling heap profiler runs
// from the start, counting what the collections freed too, and {cmd: 'allocations', file} writes
// the bytes allocated so far per function (self, top 60) there: what a start or an edit allocates.
import { Session } from 'node:inspector';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';

const dir = process.env.SERVE_MEMORY_PROBE;
if (dir) {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const session = process.env.SERVE_MEMORY_ALLOCATIONS ? new Session() : undefined;
  if (session) {
    session.connect();
    session.post('HeapProfiler.startSampling', { samplingInterval: 32768, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  }
  const allocations = (file) => {
    session.post('HeapProfiler.getSamplingProfile', (err, result) => {
      if (err) return;
      const bySite = new Map();
      const walk = (node) => {
        const f = node.callFrame;
        const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
        bySite.set(key, (bySite.get(key) ?? 0) + node.selfSize);
        for (const child of node.children) walk(child);
      };
      walk(result.profile.head);
      const total = [...bySite.values()].reduce((a, b) => a + b, 0);
      const lines = [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 60).map(([k, v]) => `${(v / 1048576).toFixed(1).padStart(7)} MB  ${k}`);
      writeFileSync(file, `allocated (sampled) ${(total / 1048576).toFixed(1)} MB\n${lines.join('\n')}\n`);
    });
  };
  process.on('SIGUSR2', () => {
    const request = JSON.parse(readFileSync(join(dir, 'request.json'), 'utf8'));
    let answer;
    if (request.cmd === 'snapshot') {
      answer = { file: v8.writeHeapSnapshot(request.file) };
    } else if (request.cmd === 'allocations') {
      if (session) allocations(request.file);
      answer = { file: request.file };
    } else {
      if (request.gc === true) gc();
      else if (request.gc === 'compact') gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
      const cpu = process.cpuUsage();
      answer = { memory: process.memoryUsage(), heap: v8.getHeapStatistics(), spaces: v8.getHeapSpaceStatistics(), cpuMs: (cpu.user + cpu.system) / 1000, execArgv: process.execArgv };
    }
    writeFileSync(join(dir, 'response.tmp'), JSON.stringify({ id: request.id, ...answer }));
    renameSync(join(dir, 'response.tmp'), join(dir, 'response.json'));
  });
}
