// A smaller lab from a topology file: some of its racks, the first nodes of each, and only what those still need
// (the spine links of the kept ToRs, the pods of the kept nodes). For benchmarks that size a lab down (the smoke size,
// a one-rack lab). Works on the parsed YAML document, so the rest of the file (services, namespaces) stays as written.

export interface TopologyDocument {
  routers: { name: string; role?: string }[];
  links: { type?: string; a?: string; b?: string; tor?: string }[];
  nodes: { name: string; rack: string | string[] }[];
  externalHosts?: { router: string }[];
  kubernetes?: { pods?: { nodeName: string }[] };
  [key: string]: unknown;
}

export interface SubsetOptions {
  /** The ToRs whose racks stay (every other ToR goes, with its links and nodes). */
  tors: readonly string[];
  /** The first this-many nodes of each kept rack, as listed; all when omitted. */
  nodesPerRack?: number;
}

/** The document with only the given racks (and at most nodesPerRack nodes in each); the input is not changed. */
export function topologySubset<T extends TopologyDocument>(doc: T, o: SubsetOptions): T {
  const tors = new Set(o.tors);
  const droppedTors = new Set(doc.routers.filter((r) => r.role === 'tor' && !tors.has(r.name)).map((r) => r.name));
  const unknown = o.tors.filter((t) => !doc.routers.some((r) => r.name === t));
  if (unknown.length > 0) throw new Error(`topology subset: no router named ${unknown.join(', ')}`);
  const perRack = new Map<string, number>();
  const nodes = doc.nodes.filter((n) => {
    const racks = typeof n.rack === 'string' ? [n.rack] : n.rack;
    if (!racks.every((r) => tors.has(r))) return false;
    const first = racks[0] ?? '';
    const count = (perRack.get(first) ?? 0) + 1;
    perRack.set(first, count);
    return o.nodesPerRack === undefined || count <= o.nodesPerRack;
  });
  const kept = new Set(nodes.map((n) => n.name));
  const dropped = (name: string | undefined): boolean => name !== undefined && droppedTors.has(name);
  return {
    ...doc,
    routers: doc.routers.filter((r) => !droppedTors.has(r.name)),
    links: doc.links.filter((l) => !dropped(l.a) && !dropped(l.b) && !dropped(l.tor)),
    nodes,
    ...(doc.externalHosts === undefined ? {} : { externalHosts: doc.externalHosts.filter((e) => !droppedTors.has(e.router)) }),
    ...(doc.kubernetes === undefined ? {} : { kubernetes: { ...doc.kubernetes, pods: (doc.kubernetes.pods ?? []).filter((p) => kept.has(p.nodeName)) } }),
  };
}
