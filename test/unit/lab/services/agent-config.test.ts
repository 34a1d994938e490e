import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAgentConfig } from '../../../../src/config/agent-config.js';
import { labAgentConfig } from '../../../../src/lab/daemons.js';
import { parseTopology } from '../../../../src/lab/topology.js';

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

describe('lab: the topology services section reaches every agent', () => {
  it("two-racks' services become each node's agent `services` section, accepted by the agent's own schema", () => {
    const topology = parseTopology(readFileSync(path.join(repoRoot(), 'topologies', 'two-racks.yaml'), 'utf8'));
    for (const node of topology.nodes) {
      const config = parseAgentConfig(labAgentConfig('t', topology, node.name));
      expect(config.services.loadBalancerPools.map((p) => ({ name: p.name, cidrs: p.cidrs, autoAssign: p.autoAssign }))).to.deep.equal([
        { name: 'lab', cidrs: ['203.0.113.0/26', '2001:db8:200::/120'], autoAssign: true },
      ]);
      expect(config.services.externalIPRanges).to.deep.equal(['203.0.113.64/26', '2001:db8:201::/120']);
      expect(config.services.clusterIPRanges).to.deep.equal(['10.96.0.0/16', 'fd00:10:96::/112']);
    }
  });
});
