// What the Service lab tests share: objects in through kubectl (wire-format YAML), reads through the lab API socket,
// pods of the lab's pod server, and probes from ext1 (the client behind the spine).
import { execa } from 'execa';
import YAML from 'yaml';
import { apiRequest } from '../../../src/lab/api.js';
import { externalHostSocket } from '../../../src/lab/daemons.js';
import { labPaths } from '../../../src/lab/paths.js';
import { parsePodReply, probe, type ProbeProtocol } from '../../../src/lab/probe.js';
import type { Pod } from '../../../src/lab/services/endpoint-slices.js';
import { pollUntil } from '../../poll.js';

export async function kubectl(lab: string, args: string[], stdin?: string): Promise<string> {
  const res = await execa('kubectl', ['--kubeconfig', labPaths(lab).kubeconfig, ...args], { reject: false, timeout: 30_000, ...(stdin === undefined ? {} : { input: stdin }) });
  if (res.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${res.exitCode}): ${res.stderr}`);
  return res.stdout;
}

export async function apply(lab: string, object: Record<string, unknown>): Promise<void> {
  await kubectl(lab, ['apply', '-f', '-'], YAML.stringify(object, { version: '1.1' }));
}

export async function get<T>(lab: string, urlPath: string): Promise<T> {
  const res = await apiRequest(labPaths(lab).apiSocket, 'GET', urlPath);
  if (res.status !== 200) throw new Error(`GET ${urlPath}: ${res.status}`);
  return res.body as T;
}

/** A pod of the lab's pod server answering on 8080, TCP and UDP (named ports serve-tcp, serve-udp). */
export function servingPod(name: string, namespace: string, node: string, labels: Record<string, string>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels, ...extra },
    spec: {
      nodeName: node,
      containers: [
        {
          name: 'serve',
          image: 'podroute.io/lab-podserver',
          ports: [
            { name: 'serve-tcp', containerPort: 8080, protocol: 'TCP' },
            { name: 'serve-udp', containerPort: 8080, protocol: 'UDP' },
          ],
        },
      ],
    },
  };
}

/**
 * A dual-stack Service in namespace x of the serving pods: port 80/TCP to the named port serve-tcp (resolved per
 * pod), 53/UDP to 8080 by number.
 */
export function dualStackService(name: string, selector: Record<string, string>, spec: Record<string, unknown>, annotations: Record<string, string> = {}): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'x', ...(Object.keys(annotations).length > 0 ? { annotations } : {}) },
    spec: {
      selector,
      ipFamilyPolicy: 'RequireDualStack',
      ipFamilies: ['IPv4', 'IPv6'],
      ports: [
        { name: 'http', port: 80, targetPort: 'serve-tcp', protocol: 'TCP' },
        { name: 'dns', port: 53, targetPort: 8080, protocol: 'UDP' },
      ],
      ...spec,
    },
  };
}

export async function waitRunning(lab: string, namespace: string, name: string): Promise<Pod> {
  return await pollUntil(
    `pod ${namespace}/${name} running with two addresses`,
    async () => {
      const pod = await get<Pod>(lab, `/api/v1/namespaces/${namespace}/pods/${name}`);
      return pod.status?.phase === 'Running' && (pod.status.podIPs ?? []).length === 2 ? pod : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
}

export interface Ext1Reply {
  identity?: string;
  client?: string;
  error?: string;
}

export async function fromExt1(lab: string, target: string, port: number, protocol: ProbeProtocol, timeoutMs = 2000): Promise<Ext1Reply> {
  const r = await probe(externalHostSocket(labPaths(lab), 'ext1'), { target, port, protocol, timeoutMs });
  const reply = r.ok ? parsePodReply(r.reply ?? '') : undefined;
  return r.ok ? { ...(reply === undefined ? {} : { identity: reply.identity, client: reply.clientAddress }) } : { error: r.error ?? 'failed' };
}
