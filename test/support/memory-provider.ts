import type { SnapshotProvider } from '../../src/app/gateway-runtime.js';
import type { Snapshot } from '../../src/providers/manifest-files.js';

/** A provider whose snapshots the test hands over: emit() delivers a change as the file and Kubernetes providers do (the runtime translates at once). */
export class MemoryProvider implements SnapshotProvider {
  private readonly listeners = new Set<(snapshot: Snapshot) => void>();
  constructor(private readonly first: Snapshot) {}
  start(): Promise<Snapshot> {
    return Promise.resolve(this.first);
  }
  onChange(listener: (snapshot: Snapshot) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
  emit(snapshot: Snapshot): void {
    for (const l of this.listeners) l(snapshot);
  }
}
