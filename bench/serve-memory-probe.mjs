// Preloaded into serve by bench/serve-memory.ts (node --import; it survives bin/switchyard.js
// restarting itself, an IPC channel would not). On SIGUSR2 it reads the request in
// $SERVE_MEMORY_PROBE/request.json and answers in response.json: {cmd: 'stats', gc} (gc: true for a
// full GC, 'compact' for V8's last-resort one that also moves objects and gives pages back) gets V8's heap
// statistics per space, process.memoryUsage() and the CPU used so far; {cmd: 'snapshot', file}
// writes a heap snapshot there.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';

const dir = process.env.SERVE_MEMORY_PROBE;
if (dir) {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  process.on('SIGUSR2', () => {
    const request = JSON.parse(readFileSync(join(dir, 'request.json'), 'utf8'));
    let answer;
    if (request.cmd === 'snapshot') {
      answer = { file: v8.writeHeapSnapshot(request.file) };
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
