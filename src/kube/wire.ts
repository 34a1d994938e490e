// The Kubernetes objects podroute reads and writes, typed exactly as they are on the wire: the JSON that
// kube-apiserver stores, lists and watches, with the API reference's field names (kubernetes-types, generated
// from the Kubernetes OpenAPI document; type-only, so it costs no memory at run time).
//
// Not @kubernetes/client-node's models: those rename fields for TypeScript (NetworkPolicyIngressRule.from is
// `_from` there) and type timestamps as Date, which only its ObjectSerializer produces. The agent decodes no
// object through that serializer: what it reads is the JSON as sent, so its types must be the wire's.
export type { Container, ContainerPort, Event as KubeEvent, Namespace, Node, NodeAddress, Pod, Service } from 'kubernetes-types/core/v1.js';
export type { LabelSelector, LabelSelectorRequirement, ObjectMeta } from 'kubernetes-types/meta/v1.js';
export type { Endpoint, EndpointSlice } from 'kubernetes-types/discovery/v1.js';
export type {
  IPBlock,
  NetworkPolicy,
  NetworkPolicyEgressRule,
  NetworkPolicyIngressRule,
  NetworkPolicyPeer,
  NetworkPolicyPort,
  NetworkPolicySpec,
} from 'kubernetes-types/networking/v1.js';

/** Any Kubernetes object: what list and watch responses carry before the kind is known. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: import('kubernetes-types/meta/v1.js').ObjectMeta;
}
