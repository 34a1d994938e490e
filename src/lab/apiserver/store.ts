// The lab API server's storage: objects by kind, one global resourceVersion counter (like etcd's revision) and a
// bounded window of recent change events that watches resume from. Synchronous and in memory; persistence is a
// debounced snapshot written by the PersistentSnapshot below.
import fs from 'node:fs';
import path from 'node:path';
import { ApiError } from './errors.js';

export type KubeObject = Record<string, unknown> & {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
};

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  [k: string]: unknown;
}

export type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface ChangeRecord {
  rv: number;
  /** Kind name, e.g. 'Pod'. */
  kind: string;
  type: ChangeType;
  /** The object after the change (for DELETED: its last state, carrying the deletion's resourceVersion). */
  object: KubeObject;
  /** The object before the change; undefined for ADDED. */
  oldObject: KubeObject | undefined;
}

export function objectKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

function keyOf(obj: KubeObject): string {
  return objectKey(obj.metadata?.namespace, obj.metadata?.name ?? '');
}

/** Sort order of list results: namespace, then name (etcd key order). */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class GoneError extends ApiError {
  constructor(rv: number, oldest: number) {
    super('Expired', `too old resource version: ${rv} (${oldest})`);
  }
}

export interface StoreSnapshotFile {
  format: 'podroute-lab-apiserver/1';
  resourceVersion: number;
  objects: Record<string, KubeObject[]>;
}

export class ObjectStore {
  private rv = 0;
  /** Every change with rv > windowStart is still in `events`. */
  private windowStart = 0;
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private events: ChangeRecord[] = [];
  private readonly listeners = new Set<(rec: ChangeRecord) => void>();
  private readonly eventWindow: number;
  private readonly onCommit: (() => void) | undefined;

  constructor(options: { eventWindow: number; onCommit?: () => void }) {
    if (!Number.isInteger(options.eventWindow) || options.eventWindow < 1) {
      throw new RangeError(`eventWindow must be a positive integer, got ${options.eventWindow}`);
    }
    this.eventWindow = options.eventWindow;
    this.onCommit = options.onCommit;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  /** The oldest resourceVersion a watch may resume from. */
  get oldestResumable(): number {
    return this.windowStart;
  }

  /** Takes the next resourceVersion; the caller commits exactly one change with it. */
  nextRv(): number {
    return this.rv + 1;
  }

  get(kind: string, key: string): KubeObject | undefined {
    return this.objects.get(kind)?.get(key);
  }

  /** Current objects of a kind, in key order. The objects are the stored ones: never mutate them. */
  list(kind: string): KubeObject[] {
    const m = this.objects.get(kind);
    if (m === undefined) return [];
    return [...m.entries()].sort((a, b) => compareKeys(a[0], b[0])).map((e) => e[1]);
  }

  /** The objects of a kind as they were at resourceVersion `rv` (throws GoneError when out of the window). */
  listAt(kind: string, rv: number): KubeObject[] {
    if (rv < this.windowStart) throw new GoneError(rv, this.windowStart);
    if (rv >= this.rv) return this.list(kind);
    const state = new Map(this.objects.get(kind) ?? []);
    const seen = new Set<string>();
    for (const e of this.events) {
      if (e.rv <= rv || e.kind !== kind) continue;
      const key = keyOf(e.object);
      if (seen.has(key)) continue;
      seen.add(key);
      if (e.oldObject === undefined) state.delete(key);
      else state.set(key, e.oldObject);
    }
    return [...state.entries()].sort((a, b) => compareKeys(a[0], b[0])).map((e) => e[1]);
  }

  /** Changes after `rv`, oldest first; throws GoneError when some of them have left the window. */
  changesAfter(rv: number): ChangeRecord[] {
    if (rv < this.windowStart) throw new GoneError(rv, this.windowStart);
    const first = this.events.findIndex((e) => e.rv > rv);
    return first < 0 ? [] : this.events.slice(first);
  }

  subscribe(listener: (rec: ChangeRecord) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stores `object` (whose metadata.resourceVersion must be nextRv()) and announces the change. */
  commit(kind: string, type: ChangeType, object: KubeObject): ChangeRecord {
    const rv = this.rv + 1;
    if (object.metadata?.resourceVersion !== String(rv)) {
      throw new Error(`internal: committing ${kind} with resourceVersion ${object.metadata?.resourceVersion} != ${rv}`);
    }
    const key = keyOf(object);
    let byKey = this.objects.get(kind);
    if (byKey === undefined) {
      byKey = new Map();
      this.objects.set(kind, byKey);
    }
    const oldObject = byKey.get(key);
    if (type === 'DELETED') byKey.delete(key);
    else byKey.set(key, object);
    this.rv = rv;
    const rec: ChangeRecord = { rv, kind, type, object, oldObject };
    this.events.push(rec);
    if (this.events.length > this.eventWindow) {
      const drop = this.events.length - this.eventWindow;
      this.windowStart = this.events[drop - 1]!.rv;
      this.events = this.events.slice(drop);
    }
    for (const l of [...this.listeners]) l(rec);
    this.onCommit?.();
    return rec;
  }

  toSnapshot(): StoreSnapshotFile {
    const objects: Record<string, KubeObject[]> = {};
    for (const [kind, m] of this.objects) objects[kind] = [...m.values()];
    return { format: 'podroute-lab-apiserver/1', resourceVersion: this.rv, objects };
  }

  /** Replaces the contents with a snapshot: the event window restarts empty at the snapshot's resourceVersion. */
  loadSnapshot(snap: StoreSnapshotFile): void {
    this.objects.clear();
    for (const [kind, list] of Object.entries(snap.objects)) {
      const m = new Map<string, KubeObject>();
      for (const o of list) m.set(keyOf(o), o);
      this.objects.set(kind, m);
    }
    this.rv = snap.resourceVersion;
    this.windowStart = snap.resourceVersion;
    this.events = [];
  }
}

export class StoreFileError extends Error {
  readonly code = 'STORE_FILE_INVALID';
  constructor(file: string, why: string) {
    super(`lab API store ${file} is unreadable: ${why}`);
    this.name = 'StoreFileError';
  }
}

export function readSnapshotFile(file: string): StoreSnapshotFile | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new StoreFileError(file, (err as Error).message);
  }
  const snap = parsed as Partial<StoreSnapshotFile>;
  if (snap.format !== 'podroute-lab-apiserver/1') throw new StoreFileError(file, 'unknown "format"');
  if (!Number.isInteger(snap.resourceVersion) || (snap.resourceVersion ?? -1) < 0) {
    throw new StoreFileError(file, '"resourceVersion" must be a non-negative integer');
  }
  if (snap.objects === null || typeof snap.objects !== 'object') throw new StoreFileError(file, '"objects" missing');
  return snap as StoreSnapshotFile;
}

/** Writes store snapshots to a file: debounced, one write at a time, atomically (temp file + rename). */
export class PersistentSnapshot {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private dirty = false;

  constructor(
    private readonly file: string,
    private readonly snapshot: () => StoreSnapshotFile,
    private readonly debounceMs: number,
    private readonly onError: (err: Error) => void,
  ) {}

  markDirty(): void {
    this.dirty = true;
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush().catch((err: unknown) => this.onError(err as Error));
    }, this.debounceMs);
  }

  /** Writes now if anything changed since the last write; resolves when the file is on disk. */
  async flush(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.writing !== undefined) await this.writing;
    if (!this.dirty) return;
    this.dirty = false;
    const text = JSON.stringify(this.snapshot());
    this.writing = this.write(text).finally(() => {
      this.writing = undefined;
    });
    try {
      await this.writing;
    } catch (err) {
      this.dirty = true;
      throw err;
    }
  }

  private async write(text: string): Promise<void> {
    await fs.promises.mkdir(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp-${process.pid}`;
    const fh = await fs.promises.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, this.file);
  }
}
