// The kubeconfig the lab writes for kubectl and podroute: plain HTTP, no credentials (the lab API is reachable
// only from the host's loopback and the lab's own namespaces).
import YAML from 'yaml';

export function renderKubeconfig(serverUrl: string, context = 'podroute-lab'): string {
  let parsed: URL;
  try {
    parsed = new URL(serverUrl);
  } catch {
    throw new TypeError(`renderKubeconfig: serverUrl "${serverUrl}" is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new TypeError(`renderKubeconfig: serverUrl "${serverUrl}" must be http:// or https://`);
  }
  return YAML.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    // client-node 1.4 refuses http:// servers unless the cluster is marked insecure-skip-tls-verify
    // ("HTTP protocol is not allowed when skipTLSVerify is not set or false"); kubectl does not mind.
    clusters: [
      {
        name: context,
        cluster: { server: serverUrl, ...(parsed.protocol === 'http:' ? { 'insecure-skip-tls-verify': true } : {}) },
      },
    ],
    users: [{ name: context, user: {} }],
    contexts: [{ name: context, context: { cluster: context, user: context, namespace: 'default' } }],
    'current-context': context,
    preferences: {},
  });
}
