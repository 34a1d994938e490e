// Kubernetes label selector semantics (metav1.LabelSelector), the agent's one matcher: which nodes peer with a
// configured BGP peer, which pods and namespaces a NetworkPolicy selects. An empty selector matches everything;
// `NotIn` and `DoesNotExist` match a missing label.

export interface LabelSelectorLike {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

export function selectorMatches(selector: LabelSelectorLike | undefined, labels: Record<string, string>): boolean {
  if (selector === undefined) return true;
  // Plain loops: a full policy compile calls this per pod and peer set (tens of thousands of times), and
  // Object.entries or destructuring allocate on every call.
  const matchLabels = selector.matchLabels;
  if (matchLabels !== undefined) {
    for (const key in matchLabels) if (labels[key] !== matchLabels[key]) return false;
  }
  const expressions = selector.matchExpressions;
  if (expressions === undefined) return true;
  for (const expression of expressions) {
    const has = Object.prototype.hasOwnProperty.call(labels, expression.key);
    const values = expression.values ?? [];
    switch (expression.operator) {
      case 'In':
        if (!has || !values.includes(labels[expression.key] as string)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[expression.key] as string)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        // An operator we do not know selects nothing: never widen a selection on bad input.
        return false;
    }
  }
  return true;
}
