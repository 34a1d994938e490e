// The communities and local preference this node attaches to what it advertises, per class: the configuration's
// (bgp.communities, bgp.localPreference), replaced field by field by the node's valid annotations (node-info.ts).
import { parseCommunityList } from '../bgp/communities.js';
import type { PathAttributes } from '../bgp/types.js';
import type { AdvertisedClass, AgentConfig } from '../config/agent-config.js';
import type { NodeInfo } from '../kube/node-info.js';

/** Canonical attributes (sorted, no duplicates, empty lists left out), ready to spread into an OriginatedPath. */
export function advertisedAttributes(config: AgentConfig, self: NodeInfo, cls: AdvertisedClass): PathAttributes {
  const override = self.attributeOverrides?.[cls];
  // The configured list was validated when the configuration was loaded: no problems are left to report here.
  const set = override?.communities ?? parseCommunityList(config.bgp.communities[cls]);
  const localPref = override?.localPref ?? config.bgp.localPreference[cls];
  const out: PathAttributes = {};
  if (set.communities.length > 0) out.communities = set.communities;
  if (set.largeCommunities.length > 0) out.largeCommunities = set.largeCommunities;
  if (localPref !== undefined) out.localPref = localPref;
  return out;
}
