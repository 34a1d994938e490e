// A DaemonSet's pod spec translated the way a kubelet realizes it, for podman on a lab node: the `podman run`
// arguments of each container (command/args, env with downward-API values, mounts, capabilities, read-only root,
// seccomp, user, memory limit, the node's network namespace for hostNetwork) and the files of each ConfigMap,
// Secret and projected volume with their modes. Pure: the lab runner (test/lab/deploy/podman-kubelet.ts) makes
// the directories and runs podman. Fields are read as they are on the wire (the rendered manifests).
import YAML from 'yaml';

/** The pod spec fields this translation reads (wire names). */
export interface WirePodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  hostNetwork?: boolean;
  /** SIGTERM, then this many seconds, then SIGKILL when the pod is deleted (the API's default is 30). */
  terminationGracePeriodSeconds?: number;
  securityContext?: { seccompProfile?: { type?: string; localhostProfile?: string } };
  initContainers?: WireContainer[];
  containers: WireContainer[];
  volumes?: WireVolume[];
}

export interface WireContainer {
  name: string;
  image: string;
  imagePullPolicy?: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  livenessProbe?: WireProbe;
  readinessProbe?: WireProbe;
  securityContext?: {
    runAsUser?: number;
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    privileged?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type?: string };
  };
  resources?: { limits?: Record<string, string | number>; requests?: Record<string, string | number> };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
}

export interface WireProbe {
  httpGet?: { host?: string; port: number | string; path?: string; scheme?: string };
  exec?: { command: string[] };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  failureThreshold?: number;
}

interface KeyToPath {
  key: string;
  path: string;
  mode?: number;
}

export interface WireVolume {
  name: string;
  configMap?: { name: string; items?: KeyToPath[]; defaultMode?: number; optional?: boolean };
  secret?: { secretName: string; items?: KeyToPath[]; defaultMode?: number; optional?: boolean };
  emptyDir?: { medium?: string; sizeLimit?: string };
  hostPath?: { path: string; type?: string };
  projected?: {
    defaultMode?: number;
    sources: {
      serviceAccountToken?: { path: string; expirationSeconds?: number; audience?: string };
      configMap?: { name: string; items?: KeyToPath[]; optional?: boolean };
      secret?: { name: string; items?: KeyToPath[]; optional?: boolean };
      downwardAPI?: { items: { path: string; fieldRef?: { apiVersion?: string; fieldPath: string }; mode?: number }[] };
    }[];
  };
}

/** What the pod's downward API and projected sources resolve against. */
export interface PodFacts {
  namespace: string;
  name: string;
  nodeName: string;
  serviceAccountName: string;
  /** ConfigMaps and Secrets by name: key -> content (Secret data already base64-decoded). */
  configMaps: ReadonlyMap<string, Readonly<Record<string, string>>>;
  secrets: ReadonlyMap<string, Readonly<Record<string, Buffer>>>;
  /** The token a TokenRequest for the pod's service account returned. */
  serviceAccountToken: string;
}

export class PodTranslationError extends Error {
  readonly code = 'POD_TRANSLATION';
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
    this.name = 'PodTranslationError';
  }
}

/** The kubelet's default mode of ConfigMap, Secret and projected volume files (0644). */
export const DEFAULT_VOLUME_FILE_MODE = 0o644;

export interface VolumeFile {
  /** Relative to the volume's directory. */
  path: string;
  content: Buffer;
  mode: number;
}

/** The value of a downward-API fieldRef, as the kubelet resolves the fields it supports. */
export function fieldRefValue(fieldPath: string, facts: PodFacts): string {
  switch (fieldPath) {
    case 'spec.nodeName':
      return facts.nodeName;
    case 'metadata.namespace':
      return facts.namespace;
    case 'metadata.name':
      return facts.name;
    case 'spec.serviceAccountName':
      return facts.serviceAccountName;
    default:
      throw new PodTranslationError('fieldRef.fieldPath', `"${fieldPath}" is not supported by the lab runner`);
  }
}

function keyedFiles(kind: string, name: string, data: Readonly<Record<string, Buffer>> | undefined, optional: boolean, items: KeyToPath[] | undefined, mode: number): VolumeFile[] {
  if (data === undefined) {
    // A missing optional source projects nothing; a missing required one keeps the pod from starting.
    if (optional) return [];
    throw new PodTranslationError(`${kind} ${name}`, 'not found (and not optional)');
  }
  if (items === undefined) return Object.keys(data).sort().map((key) => ({ path: key, content: data[key]!, mode }));
  return items.map((item) => {
    const content = data[item.key];
    if (content === undefined) throw new PodTranslationError(`${kind} ${name}`, `has no key "${item.key}"`);
    return { path: item.path, content, mode: item.mode ?? mode };
  });
}

const utf8 = (data: Readonly<Record<string, string>> | undefined): Record<string, Buffer> | undefined =>
  data === undefined ? undefined : Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'utf8')]));

/**
 * The files of a ConfigMap, Secret or projected volume as the kubelet writes them (keys or items, defaultMode and
 * per-item modes); undefined for other volume types (emptyDir, hostPath).
 */
export function volumeFiles(volume: WireVolume, facts: PodFacts): VolumeFile[] | undefined {
  if (volume.configMap !== undefined) {
    const cm = volume.configMap;
    return keyedFiles('configMap', cm.name, utf8(facts.configMaps.get(cm.name)), cm.optional === true, cm.items, cm.defaultMode ?? DEFAULT_VOLUME_FILE_MODE);
  }
  if (volume.secret !== undefined) {
    const s = volume.secret;
    return keyedFiles('secret', s.secretName, facts.secrets.get(s.secretName), s.optional === true, s.items, s.defaultMode ?? DEFAULT_VOLUME_FILE_MODE);
  }
  if (volume.projected !== undefined) {
    const mode = volume.projected.defaultMode ?? DEFAULT_VOLUME_FILE_MODE;
    return volume.projected.sources.flatMap((source): VolumeFile[] => {
      if (source.serviceAccountToken !== undefined) return [{ path: source.serviceAccountToken.path, content: Buffer.from(facts.serviceAccountToken), mode }];
      if (source.configMap !== undefined) {
        const cm = source.configMap;
        return keyedFiles('configMap', cm.name, utf8(facts.configMaps.get(cm.name)), cm.optional === true, cm.items, mode);
      }
      if (source.secret !== undefined) {
        const s = source.secret;
        return keyedFiles('secret', s.name, facts.secrets.get(s.name), s.optional === true, s.items, mode);
      }
      if (source.downwardAPI !== undefined) {
        return source.downwardAPI.items.map((item) => {
          if (item.fieldRef === undefined) throw new PodTranslationError(`downwardAPI ${item.path}`, 'only fieldRef items are supported');
          return { path: item.path, content: Buffer.from(fieldRefValue(item.fieldRef.fieldPath, facts)), mode: item.mode ?? mode };
        });
      }
      throw new PodTranslationError(`volume ${volume.name}`, 'a projected source of an unsupported kind');
    });
  }
  return undefined;
}

/** Where a container is run: the lab and node, and where the runner put each volume on the host. */
export interface PodmanPlacement {
  /** Prefix of the container names (carries the lab name, so they never collide between labs). */
  namePrefix: string;
  /** The lab node's network namespace, for hostNetwork pods (`/run/netns/<lab>-<node>`). */
  netnsPath: string;
  /** Host path of each volume by volume name (a hostPath volume: the lab node's own directory or file). */
  volumeHostPaths: ReadonlyMap<string, string>;
  /** Environment the kubelet adds to every container (KUBERNETES_SERVICE_HOST/PORT). */
  kubeletEnv: Readonly<Record<string, string>>;
  /** Labels put on every container (the runner finds its containers by them). */
  labels: Readonly<Record<string, string>>;
}

export function containerName(placement: Pick<PodmanPlacement, 'namePrefix'>, container: string): string {
  return `${placement.namePrefix}-${container}`;
}

/** Kubernetes memory quantity (Mi, Gi, M, G, Ki, plain bytes) in bytes. */
export function memoryBytes(quantity: string | number): number {
  if (typeof quantity === 'number') return quantity;
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity);
  if (match === null) throw new PodTranslationError('resources.limits.memory', `"${quantity}" is not a quantity`);
  const unit: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Math.round(Number(match[1]) * (match[2] === undefined ? 1 : unit[match[2]]!));
}

const capName = (cap: string): string => cap.toUpperCase().replace(/^CAP_/, '');

/**
 * `podman run` arguments (after `run`) for one container of the pod, as the kubelet would create it: the image's
 * ENTRYPOINT replaced by `command` and its CMD by `args` (a command without args drops the image's CMD), env in
 * order with fieldRefs resolved, every volumeMount, and the container's securityContext (drop then add
 * capabilities, no-new-privileges, read-only root without podman's extra tmpfs mounts, the user, the pod's
 * seccomp profile).
 */
export function podmanRunArgs(spec: WirePodSpec, container: WireContainer, placement: PodmanPlacement, facts: PodFacts): string[] {
  const field = (f: string): string => `containers[${container.name}].${f}`;
  const args = ['--detach', '--name', containerName(placement, container.name), '--pull=never'];
  for (const [k, v] of Object.entries(placement.labels)) args.push('--label', `${k}=${v}`);
  if (spec.hostNetwork !== true) throw new PodTranslationError('hostNetwork', 'only hostNetwork pods run on a lab node (its netns is the host network)');
  args.push('--network', `ns:${placement.netnsPath}`);

  const sc = container.securityContext ?? {};
  if (sc.privileged === true) throw new PodTranslationError(field('securityContext.privileged'), 'privileged containers are not run by the lab runner');
  const drop = (sc.capabilities?.drop ?? []).map(capName);
  for (const cap of drop) args.push(cap === 'ALL' ? '--cap-drop=all' : `--cap-drop=${cap}`);
  for (const cap of (sc.capabilities?.add ?? []).map(capName)) args.push(`--cap-add=${cap}`);
  if (sc.allowPrivilegeEscalation === false) args.push('--security-opt', 'no-new-privileges');
  // podman's --read-only adds tmpfs mounts on /tmp, /run and /var/tmp; a kubelet adds none.
  if (sc.readOnlyRootFilesystem === true) args.push('--read-only', '--read-only-tmpfs=false');
  if (sc.runAsUser !== undefined) args.push('--user', String(sc.runAsUser));
  const seccomp = sc.seccompProfile?.type ?? spec.securityContext?.seccompProfile?.type;
  // RuntimeDefault is podman's default profile; Unconfined would have to be asked for.
  if (seccomp === 'Unconfined') args.push('--security-opt', 'seccomp=unconfined');
  else if (seccomp !== undefined && seccomp !== 'RuntimeDefault') throw new PodTranslationError(field('seccompProfile'), `${seccomp} is not supported by the lab runner`);
  const memoryLimit = container.resources?.limits?.memory;
  if (memoryLimit !== undefined) args.push('--memory', `${memoryBytes(memoryLimit)}b`);

  for (const [k, v] of Object.entries(placement.kubeletEnv)) args.push('--env', `${k}=${v}`);
  for (const env of container.env ?? []) {
    const ref = env.valueFrom?.fieldRef;
    if (env.valueFrom !== undefined && ref === undefined) throw new PodTranslationError(field(`env[${env.name}]`), 'only fieldRef valueFrom is supported');
    args.push('--env', `${env.name}=${ref === undefined ? (env.value ?? '') : fieldRefValue(ref.fieldPath, facts)}`);
  }

  const declared = new Set((spec.volumes ?? []).map((v) => v.name));
  for (const mount of container.volumeMounts ?? []) {
    if (!declared.has(mount.name)) throw new PodTranslationError(field(`volumeMounts[${mount.name}]`), 'names no volume of the pod');
    if (mount.subPath !== undefined) throw new PodTranslationError(field(`volumeMounts[${mount.name}].subPath`), 'not supported by the lab runner');
    const host = placement.volumeHostPaths.get(mount.name);
    if (host === undefined) throw new PodTranslationError(field(`volumeMounts[${mount.name}]`), 'the runner placed no host path for this volume');
    args.push('--volume', `${host}:${mount.mountPath}:${mount.readOnly === true ? 'ro' : 'rw'}`);
  }

  const [entrypoint, ...commandArgs] = container.command ?? [];
  // A command replaces the image's ENTRYPOINT and, without args, also drops its CMD (as the kubelet's runtime does).
  if (entrypoint !== undefined) args.push('--entrypoint', JSON.stringify([entrypoint]));
  args.push(container.image, ...commandArgs, ...(container.args ?? []));
  return args;
}

/** The URL of an httpGet probe (a named port resolved against the container's ports). */
export function httpProbeUrl(container: WireContainer, probe: WireProbe): string {
  const get = probe.httpGet;
  if (get === undefined) throw new PodTranslationError(`containers[${container.name}] probe`, 'is not an httpGet probe');
  let port = get.port;
  if (typeof port === 'string') {
    const named = container.ports?.find((p) => p.name === port);
    if (named === undefined) throw new PodTranslationError(`containers[${container.name}] probe port`, `"${port}" names no container port`);
    port = named.containerPort;
  }
  const host = get.host ?? '127.0.0.1';
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return `${(get.scheme ?? 'HTTP').toLowerCase()}://${hostPart}:${port}${get.path ?? '/'}`;
}

/**
 * The agent configuration of a rendered overlay (its ConfigMap's config.yaml) adapted to a lab node, changing as
 * little as possible: only `cni.ipamDataDir`, because the conflist the agent writes is run by the node's kubelet
 * on the host, and host-local's default state directory (/var/lib/cni/networks) is one directory shared by every
 * lab node of the machine (each node of a real cluster has its own). Everything else stays as deployed: the API
 * server comes from KUBERNETES_SERVICE_HOST/PORT and the service-account volume (in-cluster), the ToR peers from
 * the lab's Node annotations, the other paths from the pod's hostPath mounts.
 */
export function adaptAgentConfigToLab(configYaml: string, lab: { ipamDataDir: string }): string {
  const doc = YAML.parseDocument(configYaml);
  doc.setIn(['cni', 'ipamDataDir'], lab.ipamDataDir);
  return doc.toString();
}

/** The kubelet's container restart back-off (10 s doubling to 5 min; reset once a container ran 10 min). */
export const RESTART_BACK_OFF = { firstMs: 10_000, maxMs: 300_000, resetAfterMs: 600_000 } as const;

/**
 * How long restartPolicy Always waits before starting an exited container again, as the kubelet does: at once
 * after the first exit, then 10 s, 20 s, 40 s, ... up to 5 min; a container that ran 10 min before exiting counts
 * as a first exit again. `earlierExits` counts the exits since the last reset; returns the delay and the new count.
 */
export function restartDelay(earlierExits: number, ranMs: number): { delayMs: number; exits: number } {
  const exits = ranMs >= RESTART_BACK_OFF.resetAfterMs ? 0 : earlierExits;
  const delayMs = exits === 0 ? 0 : Math.min(RESTART_BACK_OFF.firstMs * 2 ** (exits - 1), RESTART_BACK_OFF.maxMs);
  return { delayMs, exits: exits + 1 };
}
