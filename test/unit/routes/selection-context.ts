// The selection context of the route tests, as a node (node-1) sees its cluster.
import type { RouteSelectionContext } from '../../../src/routes/select-routes.js';

// node-1 (us) and node-2 share AS 64512 in rack 1 (iBGP mesh); node-3 is in rack 3 (AS 65003) behind the ToRs
// 10.0.1.1/10.0.1.2 (AS 65001/65002).
export const CONTEXT: RouteSelectionContext = {
  localAsn: 64512,
  ownPodCIDRs: ['10.244.1.0/24', 'fd00:244:1::/64'],
  acceptRanges: ['10.244.0.0/16', 'fd00:244::/32', '192.168.100.0/24'],
  clusterPodRanges: ['10.244.0.0/16', 'fd00:244::/32'],
  nodes: [
    { name: 'node-1', podCIDRs: ['10.244.1.0/24', 'fd00:244:1::/64'], asn: 64512, addresses: ['10.0.1.10', 'fd00:1::10'] },
    { name: 'node-2', podCIDRs: ['10.244.2.0/24', 'fd00:244:2::/64'], asn: 64512, addresses: ['10.0.1.11', 'fd00:1::11'] },
    { name: 'node-3', podCIDRs: ['10.244.3.0/24', 'fd00:244:3::/64'], asn: 65003, addresses: ['10.0.3.10', 'fd00:3::10'] },
  ],
  onLinkNetworks: ['10.0.1.0/24', 'fd00:1::/64'],
};
