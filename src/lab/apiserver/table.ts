// meta.k8s.io/v1 Table rendering, which `kubectl get` asks for (Accept: ...;as=Table). Columns follow the real
// API server's printers closely enough that lab output reads like a real cluster's.
import type { ResourceKind } from './resources.js';
import type { KubeObject } from './store.js';

interface Column {
  name: string;
  type: 'string' | 'integer' | 'date';
  format?: 'name';
  priority: number;
  description: string;
  cell: (o: KubeObject, now: number) => string | number;
}

// Printers read deep optional fields of untyped Kubernetes JSON.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

/** Kubernetes' HumanDuration: "45s", "3m12s", "5h", "12d". */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 0) return '<invalid>';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  return `${Math.floor(hours / 24 / 365)}y`;
}

function age(o: KubeObject, now: number): string {
  const ts = o.metadata?.creationTimestamp;
  return ts === undefined ? '<unknown>' : humanDuration(now - Date.parse(ts));
}

const NAME: Column = {
  name: 'Name',
  type: 'string',
  format: 'name',
  priority: 0,
  description: 'Name must be unique within a namespace.',
  cell: (o) => o.metadata?.name ?? '',
};
const AGE: Column = {
  name: 'Age',
  type: 'string',
  priority: 0,
  description: 'CreationTimestamp is a timestamp representing the server time when this object was created.',
  cell: age,
};

function col(name: string, priority: number, cell: Column['cell'], type: Column['type'] = 'string'): Column {
  return { name, type, priority, description: name, cell };
}

function selectorText(sel: Obj | undefined): string {
  if (sel === undefined) return '<none>';
  const parts: string[] = Object.entries((sel.matchLabels ?? {}) as Record<string, string>).map(([k, v]) => `${k}=${v}`);
  for (const e of (sel.matchExpressions ?? []) as Obj[]) {
    const values = ((e.values ?? []) as string[]).join(',');
    if (e.operator === 'In') parts.push(`${e.key} in (${values})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${values})`);
    else if (e.operator === 'Exists') parts.push(String(e.key));
    else parts.push(`!${e.key}`);
  }
  return parts.length === 0 ? '<none>' : parts.join(',');
}

function podStatus(o: Obj): string {
  if (o.metadata?.deletionTimestamp !== undefined) return 'Terminating';
  const st = (o.status ?? {}) as Obj;
  for (const cs of (st.containerStatuses ?? []) as Obj[]) {
    const waiting = cs.state?.waiting?.reason;
    if (typeof waiting === 'string' && waiting !== '') return waiting;
  }
  return typeof st.reason === 'string' && st.reason !== '' ? st.reason : String(st.phase ?? 'Unknown');
}

function nodeStatus(o: Obj): string {
  const ready = ((o.status?.conditions ?? []) as Obj[]).find((c) => c.type === 'Ready');
  let s = ready === undefined ? 'Unknown' : ready.status === 'True' ? 'Ready' : ready.status === 'False' ? 'NotReady' : 'Unknown';
  if (o.spec?.unschedulable === true) s += ',SchedulingDisabled';
  return s;
}

function nodeAddress(o: Obj, type: string): string {
  const a = ((o.status?.addresses ?? []) as Obj[]).find((x) => x.type === type);
  return a === undefined ? '<none>' : String(a.address);
}

const COLUMNS: Record<string, Column[]> = {
  Namespace: [NAME, col('Status', 0, (o: Obj) => String(o.status?.phase ?? '')), AGE],
  Node: [
    NAME,
    col('Status', 0, nodeStatus),
    col('Roles', 0, (o) => {
      const roles = Object.keys(o.metadata?.labels ?? {})
        .filter((k) => k.startsWith('node-role.kubernetes.io/'))
        .map((k) => k.slice('node-role.kubernetes.io/'.length));
      return roles.length === 0 ? '<none>' : roles.sort().join(',');
    }),
    AGE,
    col('Version', 0, (o: Obj) => String(o.status?.nodeInfo?.kubeletVersion ?? '')),
    col('Internal-IP', 1, (o) => nodeAddress(o, 'InternalIP')),
    col('External-IP', 1, (o) => nodeAddress(o, 'ExternalIP')),
    col('Pod-CIDRs', 1, (o: Obj) => ((o.spec?.podCIDRs ?? []) as string[]).join(',') || '<none>'),
  ],
  Pod: [
    NAME,
    col('Ready', 0, (o: Obj) => {
      const total = ((o.spec?.containers ?? []) as unknown[]).length;
      const ready = ((o.status?.containerStatuses ?? []) as Obj[]).filter((c) => c.ready === true).length;
      return `${ready}/${total}`;
    }),
    col('Status', 0, podStatus),
    col('Restarts', 0, (o: Obj) =>
      ((o.status?.containerStatuses ?? []) as Obj[]).reduce((n, c) => n + Number(c.restartCount ?? 0), 0), 'integer'),
    AGE,
    col('IP', 1, (o: Obj) => String(o.status?.podIP ?? '<none>')),
    col('Node', 1, (o: Obj) => String(o.spec?.nodeName ?? '<none>')),
    col('Nominated Node', 1, (o: Obj) => String(o.status?.nominatedNodeName ?? '<none>')),
    col('Readiness Gates', 1, () => '<none>'),
  ],
  Service: [
    NAME,
    col('Type', 0, (o: Obj) => String(o.spec?.type ?? 'ClusterIP')),
    col('Cluster-IP', 0, (o: Obj) => String(o.spec?.clusterIP ?? '<none>')),
    col('External-IP', 0, (o: Obj) => ((o.spec?.externalIPs ?? []) as string[]).join(',') || '<none>'),
    col('Port(s)', 0, (o: Obj) =>
      ((o.spec?.ports ?? []) as Obj[]).map((p) => `${p.port}/${p.protocol ?? 'TCP'}`).join(',') || '<none>'),
    AGE,
    col('Selector', 1, (o: Obj) =>
      Object.entries((o.spec?.selector ?? {}) as Record<string, string>).map(([k, v]) => `${k}=${v}`).join(',') || '<none>'),
  ],
  NetworkPolicy: [NAME, col('Pod-Selector', 0, (o: Obj) => selectorText(o.spec?.podSelector as Obj | undefined)), AGE],
  Event: [
    col('Last Seen', 0, (o: Obj, now) => {
      const t = o.lastTimestamp ?? o.eventTime ?? o.metadata?.creationTimestamp;
      return typeof t === 'string' ? humanDuration(now - Date.parse(t)) : '<unknown>';
    }),
    col('Type', 0, (o: Obj) => String(o.type ?? '')),
    col('Reason', 0, (o: Obj) => String(o.reason ?? '')),
    col('Object', 0, (o: Obj) => `${String(o.involvedObject?.kind ?? '').toLowerCase()}/${o.involvedObject?.name ?? ''}`),
    col('Message', 0, (o: Obj) => String(o.message ?? '')),
  ],
};

export type IncludeObject = 'None' | 'Metadata' | 'Object';

/** Renders objects as a Table; `withObject` objects already carry kind/apiVersion. */
export function renderTable(
  rk: ResourceKind,
  objects: KubeObject[],
  options: { resourceVersion: string; continueToken?: string; includeObject: IncludeObject; now?: number },
): Record<string, unknown> {
  const now = options.now ?? Date.now();
  const columns = COLUMNS[rk.kind] ?? [NAME, AGE];
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: {
      resourceVersion: options.resourceVersion,
      ...(options.continueToken === undefined ? {} : { continue: options.continueToken }),
    },
    columnDefinitions: columns.map((c) => ({
      name: c.name,
      type: c.type,
      format: c.format ?? '',
      description: c.description,
      priority: c.priority,
    })),
    rows: objects.map((o) => ({
      cells: columns.map((c) => c.cell(o, now)),
      ...(options.includeObject === 'None'
        ? {}
        : {
            object:
              options.includeObject === 'Object'
                ? o
                : { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata },
          }),
    })),
  };
}
