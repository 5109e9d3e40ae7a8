// Preloaded into serve by bench/serve-memory.ts (node --import): answers {stats, gc} over the
// IPC channel with V8's heap statistics per space, process.memoryUsage() and the CPU used so far.
import v8 from 'node:v8';
import vm from 'node:vm';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

process.on('message', (message) => {
  if (message?.cmd !== 'stats') return;
  if (message.gc === true) gc();
  const cpu = process.cpuUsage();
  process.send?.({
    memory: process.memoryUsage(),
    heap: v8.getHeapStatistics(),
    spaces: v8.getHeapSpaceStatistics(),
    cpuMs: (cpu.user + cpu.system) / 1000,
  });
});
// The channel must not keep serve alive once it is told to stop.
process.channel?.unref();
