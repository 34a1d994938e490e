// What the node state is planned from. The cluster loop re-plans periodically because two of its inputs change
// without a watch event (mounted password files, the links' MTU); when neither they nor the Node objects changed,
// the plan would come out the same and the re-plan is skipped (planning 1,000 nodes and handing the BGP reconciler
// a state that makes it re-read gobgpd cost an idle agent most of its CPU).
import type { Node } from '../kube/wire.js';

export interface NodeStateInputs {
  /** The Node objects of the snapshot: the watch keeps an unchanged object's identity. */
  nodes: readonly Node[];
  secrets: ReadonlyMap<string, string>;
  secretProblems: ReadonlyMap<string, string>;
  podMtu: number | undefined;
  podMtuWarnings: readonly string[];
}

/** Pure: whether a plan from `next` would be the plan made from `previous` (undefined: never planned). */
export function sameNodeStateInputs(previous: NodeStateInputs | undefined, next: NodeStateInputs): boolean {
  if (previous === undefined) return false;
  if (previous.podMtu !== next.podMtu || !sameList(previous.podMtuWarnings, next.podMtuWarnings)) return false;
  if (!sameMap(previous.secrets, next.secrets) || !sameMap(previous.secretProblems, next.secretProblems)) return false;
  // By identity: a Node event replaces the object, so equal identities mean no Node changed.
  return sameList(previous.nodes, next.nodes);
}

function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameMap(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
