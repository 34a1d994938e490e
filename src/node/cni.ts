// The CNI network configuration podroute hands to the container runtime: the standard bridge, host-local and
// portmap plugins, one bridge per node whose gateway addresses are the first addresses of the node's podCIDRs.
import ipaddr from 'ipaddr.js';

export interface CniConfigInput {
  /** The node's podCIDRs, IPv4 and/or IPv6. */
  podCIDRs: string[];
  /** Linux bridge the pods' veths join; the node's gateway addresses live on it. */
  bridgeName: string;
  networkName: string;
  mtu?: number;
  /** host-local IPAM state directory; the runtime default (/var/lib/cni/networks) when omitted. */
  ipamDataDir?: string;
}

/** The first usable address of a CIDR: the pods' default gateway on the bridge. */
export function gatewayOf(cidr: string): string {
  const [network] = ipaddr.parseCIDR(cidr);
  const bytes = network.toByteArray();
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) + 1;
  return ipaddr.fromByteArray(bytes).toString();
}

export function renderCniConflist(input: CniConfigInput): string {
  if (input.podCIDRs.length === 0) throw new Error('renderCniConflist: the node has no podCIDRs');
  const ranges = input.podCIDRs.map((cidr) => [{ subnet: cidr, gateway: gatewayOf(cidr) }]);
  const routes = input.podCIDRs.map((cidr) => ({ dst: cidr.includes(':') ? '::/0' : '0.0.0.0/0' }));
  const conflist = {
    cniVersion: '1.0.0',
    name: input.networkName,
    plugins: [
      {
        type: 'bridge',
        bridge: input.bridgeName,
        isGateway: true,
        // podroute does its own masquerade (cluster range aware); the plugin's would NAT pod-to-pod traffic.
        ipMasq: false,
        hairpinMode: true,
        ...(input.mtu === undefined ? {} : { mtu: input.mtu }),
        ipam: {
          type: 'host-local',
          ranges,
          routes,
          ...(input.ipamDataDir === undefined ? {} : { dataDir: input.ipamDataDir }),
        },
      },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
    ],
  };
  return JSON.stringify(conflist, null, 2) + '\n';
}
