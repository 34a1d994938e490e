// KernelChanges as the monitor reports them, driven by a test: change() is a notification, restart() a monitor that
// ran again (changes in between unknown), silence() a monitor that cannot vouch for anything.
import type { KernelChanges, KernelMark, KernelObjectKind } from '../../../src/host/kernel-monitor.js';

export class FakeKernelChanges implements KernelChanges {
  private run = 1;
  private trusted = true;
  private readonly changes: Record<KernelObjectKind, number> = { link: 0, address: 0, route: 0 };
  private readonly listeners: Record<KernelObjectKind, Set<() => void>> = { link: new Set(), address: new Set(), route: new Set() };

  mark(kind: KernelObjectKind): KernelMark | undefined {
    return this.trusted ? { run: this.run, changes: this.changes[kind] } : undefined;
  }

  onChange(kind: KernelObjectKind, listener: () => void): () => void {
    this.listeners[kind].add(listener);
    return () => this.listeners[kind].delete(listener);
  }

  change(kind: KernelObjectKind): void {
    this.changes[kind]++;
    for (const l of this.listeners[kind]) l();
  }

  restart(): void {
    this.run++;
  }

  silence(): void {
    this.trusted = false;
  }
}
