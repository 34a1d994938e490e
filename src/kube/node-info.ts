// What the agent needs to know about a Node, read from the Kubernetes object. Bad annotations never throw: they
// become warnings (logged and posted as Events by the caller) and the rest of the node stays usable.
import type { Node } from './wire.js';
import { canonicalAddressText } from '../routes/ip-prefix.js';
import { parseCommunityList, type CommunitySet } from '../bgp/communities.js';
import {
  annotationPeerSchema,
  AS_TRANS,
  canonicalCIDR,
  describeIssues,
  localPreference,
  routerIdProblem,
  type AdvertisedClass,
  type AnnotationPeerConfig,
} from '../config/agent-config.js';

export const ANNOTATION_ASN = 'podroute.io/asn';
export const ANNOTATION_ROUTER_ID = 'podroute.io/router-id';
export const ANNOTATION_PEERS = 'podroute.io/peers';
/** Per advertised class: communities (comma or space separated) and LOCAL_PREF that replace bgp.communities / bgp.localPreference. */
export const ANNOTATION_COMMUNITIES: Readonly<Record<AdvertisedClass, string>> = {
  podCIDRs: 'podroute.io/pod-cidr-communities',
  services: 'podroute.io/service-communities',
};
export const ANNOTATION_LOCAL_PREFERENCE: Readonly<Record<AdvertisedClass, string>> = {
  podCIDRs: 'podroute.io/pod-cidr-local-preference',
  services: 'podroute.io/service-local-preference',
};

/** What a node's annotations set for one advertised class; a field left out keeps the configuration's. */
export interface AttributeOverride {
  communities?: CommunitySet;
  localPref?: number;
}

export interface NodeInfo {
  name: string;
  /** Canonical podCIDRs from spec.podCIDRs (or spec.podCIDR), v4 and/or v6. */
  podCIDRs: string[];
  /** InternalIP addresses, v4 and/or v6, in the order the node reports them. */
  internalIPs: string[];
  labels: Record<string, string>;
  /** From podroute.io/asn; undefined = the cluster ASN. */
  asn?: number;
  /** From podroute.io/router-id. */
  routerId?: string;
  /** Valid entries of podroute.io/peers. */
  annotationPeers: AnnotationPeerConfig[];
  /** Valid community and local-preference annotations, per advertised class; none when omitted. */
  attributeOverrides?: Partial<Record<AdvertisedClass, AttributeOverride>>;
  /** Problems found in the node's podroute annotations or spec, one sentence each. */
  warnings: string[];
}

export function nodeInfoFromObject(node: Node): NodeInfo {
  const name = node.metadata?.name ?? '';
  const annotations = node.metadata?.annotations ?? {};
  const warnings: string[] = [];

  const rawCIDRs = node.spec?.podCIDRs ?? (node.spec?.podCIDR ? [node.spec.podCIDR] : []);
  const podCIDRs: string[] = [];
  for (const raw of rawCIDRs) {
    const canonical = canonicalCIDR(raw);
    if (canonical === undefined) warnings.push(`spec.podCIDRs: ignoring ${JSON.stringify(raw)}: not a CIDR`);
    else if (!podCIDRs.includes(canonical)) podCIDRs.push(canonical);
  }

  const internalIPs: string[] = [];
  for (const address of node.status?.addresses ?? []) {
    if (address.type !== 'InternalIP') continue;
    const canonical = canonicalAddressText(address.address);
    if (canonical === undefined) warnings.push(`status.addresses: ignoring InternalIP ${JSON.stringify(address.address)}: not an IP address (zones are refused)`);
    else if (!internalIPs.includes(canonical)) internalIPs.push(canonical);
  }

  let asn: number | undefined;
  const asnText = annotations[ANNOTATION_ASN];
  if (asnText !== undefined) {
    const value = /^\d+$/.test(asnText.trim()) ? Number(asnText.trim()) : NaN;
    if (value === AS_TRANS) warnings.push(`annotation ${ANNOTATION_ASN}: ${JSON.stringify(asnText)} is AS_TRANS (a placeholder for 4-byte ASNs), not an AS; using the cluster ASN`);
    else if (Number.isInteger(value) && value >= 1 && value <= 4294967295) asn = value;
    else warnings.push(`annotation ${ANNOTATION_ASN}: ${JSON.stringify(asnText)} is not an ASN (1..4294967295); using the cluster ASN`);
  }

  let routerId: string | undefined;
  const routerIdText = annotations[ANNOTATION_ROUTER_ID];
  if (routerIdText !== undefined) {
    const problem = routerIdProblem(routerIdText.trim());
    if (problem === undefined) routerId = routerIdText.trim();
    else warnings.push(`annotation ${ANNOTATION_ROUTER_ID}: ${JSON.stringify(routerIdText)} is not a usable router ID (${problem}); ignored`);
  }

  const { peers, problems } = parsePeersAnnotation(annotations[ANNOTATION_PEERS]);
  warnings.push(...problems);

  const attributeOverrides = { podCIDRs: parseAttributeAnnotations(annotations, 'podCIDRs', warnings), services: parseAttributeAnnotations(annotations, 'services', warnings) };

  return { name, podCIDRs, internalIPs, labels: node.metadata?.labels ?? {}, asn, routerId, annotationPeers: peers, attributeOverrides, warnings };
}

/**
 * The community and local-preference annotations of one class. A list with any bad entry is ignored as a whole
 * (with a warning): half a list could drop the one community (no-export, say) a route-map relies on. An empty
 * value is a valid override: no communities.
 */
export function parseAttributeAnnotations(annotations: Record<string, string>, cls: AdvertisedClass, warnings: string[]): AttributeOverride {
  const out: AttributeOverride = {};
  const key = ANNOTATION_COMMUNITIES[cls];
  const text = annotations[key];
  if (text !== undefined) {
    const parsed = parseCommunityList(text.split(/[\s,]+/).filter((t) => t !== ''));
    if (parsed.problems.length === 0) out.communities = { communities: parsed.communities, largeCommunities: parsed.largeCommunities };
    else warnings.push(`annotation ${key}: ${parsed.problems.map((p) => p.problem).join('; ')}; the annotation is ignored (bgp.communities.${cls} applies)`);
  }
  const prefKey = ANNOTATION_LOCAL_PREFERENCE[cls];
  const prefText = annotations[prefKey];
  if (prefText !== undefined) {
    const value = /^\d+$/.test(prefText.trim()) ? Number(prefText.trim()) : NaN;
    if (localPreference.safeParse(value).success) out.localPref = value;
    else warnings.push(`annotation ${prefKey}: ${JSON.stringify(prefText)} is not a local preference (0..4294967295); ignored (bgp.localPreference.${cls} applies)`);
  }
  return out;
}

/** Parses podroute.io/peers: a JSON list; each bad entry is skipped with a warning, good ones are kept. */
export function parsePeersAnnotation(text: string | undefined): { peers: AnnotationPeerConfig[]; problems: string[] } {
  if (text === undefined || text.trim() === '') return { peers: [], problems: [] };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return { peers: [], problems: [`annotation ${ANNOTATION_PEERS}: not valid JSON (${(err as Error).message}); no annotation peers used`] };
  }
  if (!Array.isArray(parsed)) {
    return { peers: [], problems: [`annotation ${ANNOTATION_PEERS}: must be a JSON list of peers; no annotation peers used`] };
  }
  const peers: AnnotationPeerConfig[] = [];
  const problems: string[] = [];
  parsed.forEach((entry, i) => {
    if (typeof entry === 'object' && entry !== null && 'password' in entry) {
      problems.push(`annotation ${ANNOTATION_PEERS}[${i}]: skipped: plain passwords are refused in annotations (use passwordFile)`);
      return;
    }
    const result = annotationPeerSchema.safeParse(entry);
    if (result.success) peers.push(result.data);
    else problems.push(`annotation ${ANNOTATION_PEERS}[${i}]: skipped: ${describeIssues(result.error).join('; ')}`);
  });
  return { peers, problems };
}
