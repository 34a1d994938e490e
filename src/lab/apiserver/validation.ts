// Validation and defaulting of the objects the lab API server stores: a subset of the real API server's rules,
// enough that malformed objects get a 422 naming the bad field instead of being stored.
import net from 'node:net';
import type { StatusCause } from './errors.js';
import type { ResourceKind } from './resources.js';
import { labelKeyProblem, labelValueProblem } from './selectors.js';
import type { KubeObject } from './store.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const PORT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'];

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

class Causes {
  readonly list: StatusCause[] = [];
  required(field: string): void {
    this.list.push({ reason: 'FieldValueRequired', message: 'Required value', field });
  }
  invalid(field: string, value: unknown, why: string): void {
    this.list.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(value)}: ${why}`, field });
  }
  notSupported(field: string, value: unknown, supported: string[]): void {
    this.list.push({
      reason: 'FieldValueNotSupported',
      message: `Unsupported value: ${JSON.stringify(value)}: supported values: ${supported.map((s) => `"${s}"`).join(', ')}`,
      field,
    });
  }
  type(field: string, expected: string): void {
    this.list.push({ reason: 'FieldValueTypeInvalid', message: `Invalid value: must be ${expected}`, field });
  }
  duplicate(field: string, value: unknown): void {
    this.list.push({ reason: 'FieldValueDuplicate', message: `Duplicate value: ${JSON.stringify(value)}`, field });
  }
  tooLong(field: string, max: number): void {
    this.list.push({ reason: 'FieldValueTooLong', message: `Too long: may not be more than ${max} bytes`, field });
  }
  tooMany(field: string, actual: number, max: number): void {
    this.list.push({ reason: 'FieldValueTooMany', message: `Too many: ${actual}: must have at most ${max} items`, field });
  }
}

/** Which naming rule the object's name follows, as in the real API server. */
function nameRule(kind: string): { re: RegExp; max: number; text: string } {
  switch (kind) {
    case 'Namespace':
      return { re: DNS_LABEL, max: 63, text: 'a lowercase RFC 1123 label' };
    case 'Service':
      return { re: DNS_1035_LABEL, max: 63, text: 'a DNS-1035 label (lowercase, starting with a letter)' };
    default:
      return { re: DNS_SUBDOMAIN, max: 253, text: 'a lowercase RFC 1123 subdomain' };
  }
}

function validateStringMap(c: Causes, field: string, v: unknown, checkKeys: boolean): void {
  if (v === undefined || v === null) return;
  if (!isObj(v)) return c.type(field, 'an object of string values');
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') {
      c.type(`${field}[${k}]`, 'a string');
      continue;
    }
    if (checkKeys) {
      const kp = labelKeyProblem(k);
      if (kp !== undefined) c.invalid(field, k, kp);
      const vp = labelValueProblem(val);
      if (vp !== undefined) c.invalid(`${field}[${k}]`, val, vp);
    }
  }
}

function validateMeta(c: Causes, rk: ResourceKind, obj: KubeObject): void {
  const meta: unknown = obj.metadata;
  if (!isObj(meta)) return c.required('metadata');
  const name = meta.name;
  if (name === undefined || name === '') {
    c.required('metadata.name');
  } else if (typeof name !== 'string') {
    c.type('metadata.name', 'a string');
  } else {
    const rule = nameRule(rk.kind);
    if (name.length > rule.max || !rule.re.test(name)) {
      c.invalid('metadata.name', name, `must be ${rule.text} of at most ${rule.max} characters`);
    }
  }
  validateStringMap(c, 'metadata.labels', meta.labels, true);
  validateStringMap(c, 'metadata.annotations', meta.annotations, false);
  if (meta.finalizers !== undefined && !(Array.isArray(meta.finalizers) && meta.finalizers.every((f) => typeof f === 'string'))) {
    c.type('metadata.finalizers', 'a list of strings');
  }
}

function isCidr(s: unknown): boolean {
  if (typeof s !== 'string') return false;
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (m === null) return false;
  const family = net.isIP(m[1]!);
  const len = Number(m[2]);
  return (family === 4 && len <= 32) || (family === 6 && len <= 128);
}

function validatePort(c: Causes, field: string, v: unknown, required: boolean): void {
  if (v === undefined && !required) return;
  if (v === undefined) return c.required(field);
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 65535) {
    c.invalid(field, v, 'must be between 1 and 65535, inclusive');
  }
}

function validateProtocol(c: Causes, field: string, v: unknown): void {
  if (v !== undefined && !PROTOCOLS.includes(v as string)) c.notSupported(field, v, PROTOCOLS);
}

function validatePortName(c: Causes, field: string, v: unknown): void {
  if (v === undefined) return;
  if (typeof v !== 'string' || v.length > 15 || !PORT_NAME.test(v) || !/[a-z]/.test(v) || v.includes('--')) {
    c.invalid(field, v, 'must be an IANA_SVC_NAME (at most 15 characters, lowercase alphanumerics and single dashes, at least one letter)');
  }
}

function validatePod(c: Causes, obj: KubeObject): void {
  const spec = obj.spec;
  if (!isObj(spec)) return c.required('spec');
  const containers = spec.containers;
  if (!Array.isArray(containers) || containers.length === 0) return c.required('spec.containers');
  const seenNames = new Set<string>();
  containers.forEach((ctr: unknown, i) => {
    const f = `spec.containers[${i}]`;
    if (!isObj(ctr)) return c.type(f, 'an object');
    if (typeof ctr.name !== 'string' || ctr.name === '') c.required(`${f}.name`);
    else if (!DNS_LABEL.test(ctr.name)) c.invalid(`${f}.name`, ctr.name, 'must be a lowercase RFC 1123 label');
    else if (seenNames.has(ctr.name)) c.list.push({ reason: 'FieldValueDuplicate', message: `Duplicate value: "${ctr.name}"`, field: `${f}.name` });
    else seenNames.add(ctr.name);
    if (typeof ctr.image !== 'string' || ctr.image.trim() === '') c.required(`${f}.image`);
    if (ctr.ports === undefined) return;
    if (!Array.isArray(ctr.ports)) return c.type(`${f}.ports`, 'a list');
    ctr.ports.forEach((p: unknown, j) => {
      const pf = `${f}.ports[${j}]`;
      if (!isObj(p)) return c.type(pf, 'an object');
      validatePort(c, `${pf}.containerPort`, p.containerPort, true);
      validateProtocol(c, `${pf}.protocol`, p.protocol);
      validatePortName(c, `${pf}.name`, p.name);
    });
  });
  if (spec.nodeName !== undefined && typeof spec.nodeName !== 'string') c.type('spec.nodeName', 'a string');
  if (spec.hostNetwork !== undefined && typeof spec.hostNetwork !== 'boolean') c.type('spec.hostNetwork', 'a boolean');
}

function validateNode(c: Causes, obj: KubeObject): void {
  const spec = obj.spec;
  if (spec === undefined) return;
  if (!isObj(spec)) return c.type('spec', 'an object');
  if (spec.podCIDR !== undefined && spec.podCIDR !== '' && !isCidr(spec.podCIDR)) {
    c.invalid('spec.podCIDR', spec.podCIDR, 'must be a valid CIDR');
  }
  if (spec.podCIDRs !== undefined) {
    if (!Array.isArray(spec.podCIDRs)) return c.type('spec.podCIDRs', 'a list of CIDRs');
    if (spec.podCIDRs.length > 2) c.invalid('spec.podCIDRs', spec.podCIDRs, 'may specify no more than one CIDR for each IP family');
    spec.podCIDRs.forEach((cidr: unknown, i) => {
      if (!isCidr(cidr)) c.invalid(`spec.podCIDRs[${i}]`, cidr, 'must be a valid CIDR');
    });
    if (typeof spec.podCIDR === 'string' && spec.podCIDR !== '' && spec.podCIDRs.length > 0 && spec.podCIDRs[0] !== spec.podCIDR) {
      c.invalid('spec.podCIDRs[0]', spec.podCIDRs[0], 'must match spec.podCIDR');
    }
  }
}

function validateService(c: Causes, obj: KubeObject): void {
  const spec = obj.spec;
  if (!isObj(spec)) return c.required('spec');
  const types = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
  if (spec.type !== undefined && !types.includes(spec.type as string)) c.notSupported('spec.type', spec.type, types);
  const clusterIP = spec.clusterIP;
  if (clusterIP !== undefined && clusterIP !== '' && clusterIP !== 'None' && (typeof clusterIP !== 'string' || net.isIP(clusterIP) === 0)) {
    c.invalid('spec.clusterIP', spec.clusterIP, 'must be a valid IP address or "None"');
  }
  if (spec.ports === undefined) {
    if (spec.type !== 'ExternalName' && spec.clusterIP !== 'None') c.required('spec.ports');
    return;
  }
  if (!Array.isArray(spec.ports)) return c.type('spec.ports', 'a list');
  spec.ports.forEach((p: unknown, i) => {
    const f = `spec.ports[${i}]`;
    if (!isObj(p)) return c.type(f, 'an object');
    validatePort(c, `${f}.port`, p.port, true);
    validateProtocol(c, `${f}.protocol`, p.protocol);
    if (typeof p.targetPort === 'number') validatePort(c, `${f}.targetPort`, p.targetPort, false);
    if (spec.ports instanceof Array && spec.ports.length > 1 && (p.name === undefined || p.name === '')) c.required(`${f}.name`);
  });
  if (spec.selector !== undefined) validateStringMap(c, 'spec.selector', spec.selector, true);
  const type = spec.type ?? 'ClusterIP';
  if (spec.loadBalancerClass !== undefined && spec.loadBalancerClass !== null) {
    if (type !== 'LoadBalancer') c.invalid('spec.loadBalancerClass', spec.loadBalancerClass, "may only be used when `type` is 'LoadBalancer'");
    else if (typeof spec.loadBalancerClass !== 'string') c.type('spec.loadBalancerClass', 'a string');
    else {
      const problem = labelKeyProblem(spec.loadBalancerClass);
      if (problem !== undefined) c.invalid('spec.loadBalancerClass', spec.loadBalancerClass, problem);
    }
  }
  if (spec.externalTrafficPolicy !== undefined) {
    if (type !== 'NodePort' && type !== 'LoadBalancer') c.invalid('spec.externalTrafficPolicy', spec.externalTrafficPolicy, 'may only be set when `type` is \'NodePort\' or \'LoadBalancer\'');
    else if (spec.externalTrafficPolicy !== 'Cluster' && spec.externalTrafficPolicy !== 'Local') c.notSupported('spec.externalTrafficPolicy', spec.externalTrafficPolicy, ['Cluster', 'Local']);
  }
  if (spec.internalTrafficPolicy !== undefined && spec.internalTrafficPolicy !== 'Cluster' && spec.internalTrafficPolicy !== 'Local') {
    c.notSupported('spec.internalTrafficPolicy', spec.internalTrafficPolicy, ['Cluster', 'Local']);
  }
  if (spec.loadBalancerIP !== undefined && spec.loadBalancerIP !== '' && (typeof spec.loadBalancerIP !== 'string' || net.isIP(spec.loadBalancerIP) === 0)) {
    c.invalid('spec.loadBalancerIP', spec.loadBalancerIP, 'must be a valid IP address');
  }
  if (spec.externalIPs !== undefined) {
    if (!Array.isArray(spec.externalIPs)) c.type('spec.externalIPs', 'a list');
    else spec.externalIPs.forEach((ip: unknown, i) => {
      if (typeof ip !== 'string' || net.isIP(ip) === 0) c.invalid(`spec.externalIPs[${i}]`, ip, 'must be a valid IP address');
    });
  }
  const policies = ['SingleStack', 'PreferDualStack', 'RequireDualStack'];
  if (spec.ipFamilyPolicy !== undefined && !policies.includes(spec.ipFamilyPolicy as string)) c.notSupported('spec.ipFamilyPolicy', spec.ipFamilyPolicy, policies);
  if (spec.ipFamilies !== undefined) {
    if (!Array.isArray(spec.ipFamilies)) c.type('spec.ipFamilies', 'a list');
    else {
      if (spec.ipFamilies.length > 2) c.invalid('spec.ipFamilies', spec.ipFamilies, 'may specify no more than one IP for each IP family');
      spec.ipFamilies.forEach((f: unknown, i) => {
        if (f !== 'IPv4' && f !== 'IPv6') c.notSupported(`spec.ipFamilies[${i}]`, f, ['IPv4', 'IPv6']);
        else if ((spec.ipFamilies as unknown[]).indexOf(f) !== i) c.duplicate(`spec.ipFamilies[${i}]`, f);
      });
      if (spec.ipFamilyPolicy === 'SingleStack' && spec.ipFamilies.length > 1) c.invalid('spec.ipFamilies', spec.ipFamilies, 'when spec.ipFamilyPolicy is SingleStack, may only specify one family');
    }
  }
}

/** A Service's status as ValidateServiceStatusUpdate checks it: the load balancer's ingress entries and the conditions. */
function validateServiceStatus(c: Causes, status: unknown): void {
  if (status === undefined || status === null) return;
  if (!isObj(status)) return c.type('status', 'an object');
  const lb = status.loadBalancer;
  if (lb !== undefined && lb !== null) {
    if (!isObj(lb)) return c.type('status.loadBalancer', 'an object');
    if (lb.ingress !== undefined && lb.ingress !== null) {
      if (!Array.isArray(lb.ingress)) return c.type('status.loadBalancer.ingress', 'a list');
      lb.ingress.forEach((e: unknown, i) => {
        const f = `status.loadBalancer.ingress[${i}]`;
        if (!isObj(e)) return c.type(f, 'an object');
        const ip = e.ip;
        if (ip !== undefined && ip !== '' && (typeof ip !== 'string' || net.isIP(ip) === 0)) c.invalid(`${f}.ip`, ip, 'must be a valid IP address');
        const hostname = e.hostname;
        if (hostname !== undefined && hostname !== '') {
          if (typeof hostname !== 'string' || hostname.length > 253 || !DNS_SUBDOMAIN.test(hostname)) c.invalid(`${f}.hostname`, hostname, 'must be a lowercase RFC 1123 subdomain');
          else if (net.isIP(hostname) !== 0) c.invalid(`${f}.hostname`, hostname, 'must be a DNS name, not an IP address');
        }
        if (e.ipMode !== undefined && e.ipMode !== null) {
          if (ip === undefined || ip === '') c.required(`${f}.ipMode`);
          else if (e.ipMode !== 'VIP' && e.ipMode !== 'Proxy') c.notSupported(`${f}.ipMode`, e.ipMode, ['VIP', 'Proxy']);
        }
      });
    }
  }
  validateConditions(c, 'status.conditions', status.conditions);
}

const CONDITION_REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;

/** metav1.Condition lists as apimachinery's ValidateConditions checks them. */
function validateConditions(c: Causes, field: string, conditions: unknown): void {
  if (conditions === undefined || conditions === null) return;
  if (!Array.isArray(conditions)) return c.type(field, 'a list');
  const seen = new Set<unknown>();
  conditions.forEach((cond: unknown, i) => {
    const f = `${field}[${i}]`;
    if (!isObj(cond)) return c.type(f, 'an object');
    if (typeof cond.type !== 'string' || cond.type === '') c.required(`${f}.type`);
    else {
      const problem = labelKeyProblem(cond.type);
      if (problem !== undefined) c.invalid(`${f}.type`, cond.type, problem);
      if (seen.has(cond.type)) c.duplicate(`${f}.type`, cond.type);
      seen.add(cond.type);
    }
    if (cond.status === undefined || cond.status === '') c.required(`${f}.status`);
    else if (!['True', 'False', 'Unknown'].includes(cond.status as string)) c.notSupported(`${f}.status`, cond.status, ['True', 'False', 'Unknown']);
    if (cond.observedGeneration !== undefined && (!Number.isInteger(cond.observedGeneration) || (cond.observedGeneration as number) < 0)) {
      c.invalid(`${f}.observedGeneration`, cond.observedGeneration, 'must be greater than or equal to zero');
    }
    if (cond.lastTransitionTime === undefined || cond.lastTransitionTime === null || cond.lastTransitionTime === '') c.required(`${f}.lastTransitionTime`);
    else if (typeof cond.lastTransitionTime !== 'string' || Number.isNaN(Date.parse(cond.lastTransitionTime))) c.type(`${f}.lastTransitionTime`, 'an RFC 3339 time');
    if (cond.reason === undefined || cond.reason === '') c.required(`${f}.reason`);
    else if (typeof cond.reason !== 'string') c.type(`${f}.reason`, 'a string');
    else if (cond.reason.length > 1024) c.tooLong(`${f}.reason`, 1024);
    else if (!CONDITION_REASON.test(cond.reason)) {
      c.invalid(`${f}.reason`, cond.reason, "a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_'");
    }
    if (cond.message !== undefined && (typeof cond.message !== 'string' || cond.message.length > 32768)) c.tooLong(`${f}.message`, 32768);
  });
}

const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'];

function validateEndpointSlice(c: Causes, obj: KubeObject): void {
  const addressType = obj.addressType;
  if (addressType === undefined) c.required('addressType');
  else if (!ADDRESS_TYPES.includes(addressType as string)) c.notSupported('addressType', addressType, ADDRESS_TYPES);
  if (!Array.isArray(obj.endpoints)) return obj.endpoints === undefined ? undefined : c.type('endpoints', 'a list');
  if (obj.endpoints.length > 1000) c.tooMany('endpoints', obj.endpoints.length, 1000);
  obj.endpoints.forEach((e: unknown, i) => {
    const f = `endpoints[${i}]`;
    if (!isObj(e)) return c.type(f, 'an object');
    if (!Array.isArray(e.addresses) || e.addresses.length === 0) return c.required(`${f}.addresses`);
    if (e.addresses.length > 100) c.tooMany(`${f}.addresses`, e.addresses.length, 100);
    e.addresses.forEach((a: unknown, j) => {
      const family = typeof a === 'string' ? net.isIP(a) : 0;
      if ((addressType === 'IPv4' && family !== 4) || (addressType === 'IPv6' && family !== 6)) c.invalid(`${f}.addresses[${j}]`, a, `must be a valid ${String(addressType)} address`);
    });
    if (e.conditions !== undefined && !isObj(e.conditions)) c.type(`${f}.conditions`, 'an object');
  });
  if (obj.ports !== undefined) {
    if (!Array.isArray(obj.ports)) return c.type('ports', 'a list');
    obj.ports.forEach((p: unknown, i) => {
      if (!isObj(p)) return c.type(`ports[${i}]`, 'an object');
      if (p.port !== undefined && p.port !== null) validatePort(c, `ports[${i}].port`, p.port, true);
      validateProtocol(c, `ports[${i}].protocol`, p.protocol);
    });
  }
}

function validateLease(c: Causes, obj: KubeObject): void {
  const spec = obj.spec;
  if (spec === undefined) return;
  if (!isObj(spec)) return c.type('spec', 'an object');
  if (spec.leaseDurationSeconds !== undefined && (!Number.isInteger(spec.leaseDurationSeconds) || (spec.leaseDurationSeconds as number) <= 0)) {
    c.invalid('spec.leaseDurationSeconds', spec.leaseDurationSeconds, 'must be greater than 0');
  }
  if (spec.leaseTransitions !== undefined && (!Number.isInteger(spec.leaseTransitions) || (spec.leaseTransitions as number) < 0)) {
    c.invalid('spec.leaseTransitions', spec.leaseTransitions, 'must be greater than or equal to 0');
  }
}

function validateLabelSelector(c: Causes, field: string, sel: unknown): void {
  if (!isObj(sel)) return c.type(field, 'a label selector object');
  validateStringMap(c, `${field}.matchLabels`, sel.matchLabels, true);
  if (sel.matchExpressions === undefined) return;
  if (!Array.isArray(sel.matchExpressions)) return c.type(`${field}.matchExpressions`, 'a list');
  const ops = ['In', 'NotIn', 'Exists', 'DoesNotExist'];
  sel.matchExpressions.forEach((e: unknown, i) => {
    const f = `${field}.matchExpressions[${i}]`;
    if (!isObj(e)) return c.type(f, 'an object');
    if (typeof e.key !== 'string') c.required(`${f}.key`);
    if (!ops.includes(e.operator as string)) return c.notSupported(`${f}.operator`, e.operator, ops);
    const values = e.values ?? [];
    if (!Array.isArray(values)) return c.type(`${f}.values`, 'a list of strings');
    if ((e.operator === 'In' || e.operator === 'NotIn') && values.length === 0) {
      c.required(`${f}.values`);
    }
    if ((e.operator === 'Exists' || e.operator === 'DoesNotExist') && values.length > 0) {
      c.invalid(`${f}.values`, values, 'may not be specified when `operator` is \'Exists\' or \'DoesNotExist\'');
    }
  });
}

function validatePolicyPeers(c: Causes, field: string, peers: unknown): void {
  if (peers === undefined) return;
  if (!Array.isArray(peers)) return c.type(field, 'a list');
  peers.forEach((p: unknown, i) => {
    const f = `${field}[${i}]`;
    if (!isObj(p)) return c.type(f, 'an object');
    const n = ['podSelector', 'namespaceSelector', 'ipBlock'].filter((k) => p[k] !== undefined).length;
    if (n === 0) c.required(f);
    if (p.ipBlock !== undefined && (p.podSelector !== undefined || p.namespaceSelector !== undefined)) {
      c.list.push({ reason: 'FieldValueForbidden', message: 'Forbidden: may not specify both ipBlock and another peer', field: f });
    }
    if (p.podSelector !== undefined) validateLabelSelector(c, `${f}.podSelector`, p.podSelector);
    if (p.namespaceSelector !== undefined) validateLabelSelector(c, `${f}.namespaceSelector`, p.namespaceSelector);
    if (p.ipBlock !== undefined) {
      const b = p.ipBlock;
      if (!isObj(b)) return c.type(`${f}.ipBlock`, 'an object');
      if (!isCidr(b.cidr)) c.invalid(`${f}.ipBlock.cidr`, b.cidr, 'must be a valid CIDR');
      if (b.except !== undefined) {
        if (!Array.isArray(b.except)) return c.type(`${f}.ipBlock.except`, 'a list');
        b.except.forEach((e: unknown, j) => {
          if (!isCidr(e)) c.invalid(`${f}.ipBlock.except[${j}]`, e, 'must be a valid CIDR');
        });
      }
    }
  });
}

function validatePolicyPorts(c: Causes, field: string, ports: unknown): void {
  if (ports === undefined) return;
  if (!Array.isArray(ports)) return c.type(field, 'a list');
  ports.forEach((p: unknown, i) => {
    const f = `${field}[${i}]`;
    if (!isObj(p)) return c.type(f, 'an object');
    validateProtocol(c, `${f}.protocol`, p.protocol);
    if (typeof p.port === 'number') validatePort(c, `${f}.port`, p.port, false);
    else if (p.port !== undefined && typeof p.port !== 'string') c.type(`${f}.port`, 'an integer or a port name');
    else if (typeof p.port === 'string') validatePortName(c, `${f}.port`, p.port);
    if (p.endPort !== undefined) {
      if (typeof p.port !== 'number') {
        c.list.push({ reason: 'FieldValueForbidden', message: 'Forbidden: may not be specified when port is not a number', field: `${f}.endPort` });
      } else if (!Number.isInteger(p.endPort) || (p.endPort as number) < p.port || (p.endPort as number) > 65535) {
        c.invalid(`${f}.endPort`, p.endPort, 'must be greater than or equal to `port` and at most 65535');
      }
    }
  });
}

function validateNetworkPolicy(c: Causes, obj: KubeObject): void {
  const spec = obj.spec;
  if (!isObj(spec)) return c.required('spec');
  if (spec.podSelector === undefined) c.required('spec.podSelector');
  else validateLabelSelector(c, 'spec.podSelector', spec.podSelector);
  if (spec.policyTypes !== undefined) {
    if (!Array.isArray(spec.policyTypes)) c.type('spec.policyTypes', 'a list');
    else spec.policyTypes.forEach((t: unknown, i) => {
      if (t !== 'Ingress' && t !== 'Egress') c.notSupported(`spec.policyTypes[${i}]`, t, ['Ingress', 'Egress']);
    });
  }
  for (const dir of ['ingress', 'egress'] as const) {
    const rules = spec[dir];
    if (rules === undefined) continue;
    if (!Array.isArray(rules)) {
      c.type(`spec.${dir}`, 'a list');
      continue;
    }
    rules.forEach((r: unknown, i) => {
      const f = `spec.${dir}[${i}]`;
      if (!isObj(r)) return c.type(f, 'an object');
      validatePolicyPorts(c, `${f}.ports`, r.ports);
      validatePolicyPeers(c, `${f}.${dir === 'ingress' ? 'from' : 'to'}`, dir === 'ingress' ? r.from : r.to);
    });
  }
}

function validateEvent(c: Causes, obj: KubeObject): void {
  if (!isObj(obj.involvedObject)) c.required('involvedObject');
  else {
    // An Event lives in its object's namespace (one about a cluster-scoped object, in any).
    const about = obj.involvedObject.namespace;
    const namespace = obj.metadata?.namespace;
    if (typeof about === 'string' && about !== '' && about !== namespace) c.invalid('involvedObject.namespace', about, 'does not match event.namespace');
  }
  if (obj.type !== undefined && obj.type !== 'Normal' && obj.type !== 'Warning') {
    c.notSupported('type', obj.type, ['Normal', 'Warning']);
  }
}

export function validateObject(rk: ResourceKind, obj: KubeObject): StatusCause[] {
  const c = new Causes();
  validateMeta(c, rk, obj);
  switch (rk.kind) {
    case 'Pod':
      validatePod(c, obj);
      break;
    case 'Node':
      validateNode(c, obj);
      break;
    case 'Service':
      validateService(c, obj);
      validateServiceStatus(c, obj.status);
      break;
    case 'NetworkPolicy':
      validateNetworkPolicy(c, obj);
      break;
    case 'Event':
      validateEvent(c, obj);
      break;
    case 'EndpointSlice':
      validateEndpointSlice(c, obj);
      break;
    case 'Lease':
      validateLease(c, obj);
      break;
  }
  return c.list;
}

/** Field defaults the real API server applies, where podroute reads them (mutates `obj`). */
export function applyDefaults(rk: ResourceKind, obj: KubeObject): void {
  const spec = isObj(obj.spec) ? obj.spec : undefined;
  switch (rk.kind) {
    case 'Pod': {
      if (spec === undefined) return;
      spec.restartPolicy ??= 'Always';
      spec.dnsPolicy ??= 'ClusterFirst';
      spec.schedulerName ??= 'default-scheduler';
      spec.terminationGracePeriodSeconds ??= 30;
      for (const list of [spec.containers, spec.initContainers]) {
        if (!Array.isArray(list)) continue;
        for (const ctr of list) {
          if (!isObj(ctr) || !Array.isArray(ctr.ports)) continue;
          for (const p of ctr.ports) if (isObj(p)) p.protocol ??= 'TCP';
        }
      }
      return;
    }
    case 'Node': {
      if (spec === undefined) return;
      const cidrs = spec.podCIDRs;
      if (typeof spec.podCIDR === 'string' && spec.podCIDR !== '' && (!Array.isArray(cidrs) || cidrs.length === 0)) {
        spec.podCIDRs = [spec.podCIDR];
      } else if (Array.isArray(cidrs) && cidrs.length > 0 && (spec.podCIDR === undefined || spec.podCIDR === '')) {
        spec.podCIDR = cidrs[0];
      }
      return;
    }
    case 'Service': {
      // An ingress address without ipMode is a VIP (kube-apiserver 1.30+, the LoadBalancerIPMode default).
      const ingress = isObj(obj.status) && isObj(obj.status.loadBalancer) ? obj.status.loadBalancer.ingress : undefined;
      if (Array.isArray(ingress)) for (const e of ingress) if (isObj(e) && typeof e.ip === 'string' && e.ip !== '') e.ipMode ??= 'VIP';
      if (spec === undefined) return;
      spec.type ??= 'ClusterIP';
      spec.sessionAffinity ??= 'None';
      spec.internalTrafficPolicy ??= 'Cluster';
      if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') spec.externalTrafficPolicy ??= 'Cluster';
      if (spec.type === 'LoadBalancer') spec.allocateLoadBalancerNodePorts ??= true;
      if (Array.isArray(spec.ports)) {
        for (const p of spec.ports) {
          if (!isObj(p)) continue;
          p.protocol ??= 'TCP';
          p.targetPort ??= p.port;
        }
      }
      return;
    }
    case 'NetworkPolicy': {
      if (spec === undefined) return;
      if (!Array.isArray(spec.policyTypes) || spec.policyTypes.length === 0) {
        const egress = Array.isArray(spec.egress) && spec.egress.length > 0;
        spec.policyTypes = egress ? ['Ingress', 'Egress'] : ['Ingress'];
      }
      for (const dir of ['ingress', 'egress']) {
        const rules = spec[dir];
        if (!Array.isArray(rules)) continue;
        for (const r of rules) {
          if (!isObj(r) || !Array.isArray(r.ports)) continue;
          for (const p of r.ports) if (isObj(p)) p.protocol ??= 'TCP';
        }
      }
      return;
    }
    case 'Namespace': {
      // Since Kubernetes 1.21 every Namespace carries its name as this label; the server sets it on every write.
      const meta = obj.metadata as Record<string, unknown>;
      const labels = isObj(meta.labels) ? meta.labels : (meta.labels = {});
      if (typeof meta.name === 'string') labels['kubernetes.io/metadata.name'] = meta.name;
      const status = isObj(obj.status) ? obj.status : (obj.status = {});
      (status).phase ??= 'Active';
      return;
    }
  }
}
