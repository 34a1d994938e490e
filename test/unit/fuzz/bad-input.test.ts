// Bad input never crashes: whatever a config file, a Node's annotations or a topology file hold, the answer is the
// parsed value or a clear error of the documented class (naming the field), never another exception.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import type { Node } from '../../../src/kube/wire.js';
import { ConfigError, loadAgentConfig, parseAgentConfig } from '../../../src/config/agent-config.js';
import { nodeInfoFromObject } from '../../../src/kube/node-info.js';
import { parseTopology, TopologyError } from '../../../src/lab/topology.js';

const RUNS = 300;

/** Values that look like config: right keys, wrong types, huge lists, unicode, odd CIDRs and ASNs. */
const weirdScalar = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.integer({ min: -2, max: 4294967297 }),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom('10.244.0.0/16', '10.244.1.1/16', 'fd00::/56', '10.0.0.0/33', '::/0', '0.0.0.0/0', '1.2.3', 'unix:///x', '[::1]:50051'),
);
const weirdValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, weirdScalar, fc.array(tie('value'), { maxLength: 5 }), fc.dictionary(fc.string(), tie('value'), { maxKeys: 4 })),
})).value;
const configLike = fc.record(
  {
    nodeName: weirdValue,
    cluster: fc.oneof(weirdValue, fc.record({ asn: weirdValue, podRanges: fc.oneof(weirdValue, fc.array(weirdScalar, { maxLength: 300 })) }, { requiredKeys: [] })),
    bgp: fc.oneof(weirdValue, fc.record({ mesh: weirdValue, listenPort: weirdValue, maxPrefixes: weirdValue, peers: fc.array(fc.dictionary(fc.constantFrom('address', 'asn', 'port', 'passwordFile', 'nodeSelector', 'holdTime', 'password', 'maxPrefixes'), weirdValue), { maxLength: 4 }) }, { requiredKeys: [] })),
    gobgp: weirdValue,
    routes: weirdValue,
  },
  { requiredKeys: [] },
);

describe('bad input never crashes', () => {
  it('agent config objects: parsed, or a ConfigError whose problems each name a key', () => {
    fc.assert(
      fc.property(configLike, (input) => {
        try {
          parseAgentConfig(input);
        } catch (err) {
          expect(err).to.be.instanceOf(ConfigError);
          for (const problem of (err as ConfigError).problems) expect(problem).to.match(/^[^:]+: ./);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('agent config files of arbitrary text: parsed, or a ConfigError', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'podroute-fuzz-'));
    try {
      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('cluster: [', ': :', '- a', 'cluster:\n  podRanges: !!binary x', '\u0000')), async (text) => {
          const file = path.join(dir, 'config.yaml');
          await writeFile(file, text);
          try {
            await loadAgentConfig(file);
          } catch (err) {
            expect(err).to.be.instanceOf(ConfigError);
          }
        }),
        { numRuns: 100 },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('Node objects with arbitrary podroute annotations, podCIDRs and addresses: never throws, bad parts become warnings', () => {
    const annotation = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.json(), fc.constantFrom('[{"address":"10.0.0.1","asn":65000}]', '[{"address":"10.0.0.1","asn":65000,"password":"p"}]', '[{"address":"10.0.0.1","asn":65000,"maxPrefixes":-1}]', '[{"address":"10.0.0.1","asn":65000,"maxPrefixes":1e12}]', '[1,2,3]', '{}', '65536', '-1'));
    fc.assert(
      fc.property(
        fc.record({
          asn: annotation,
          routerId: annotation,
          peers: annotation,
          cidrs: fc.array(fc.oneof(fc.string(), fc.constantFrom('10.244.1.0/24', '10.244.1.7/24', 'fd00::/64', '300.1.1.0/24')), { maxLength: 3 }),
          ips: fc.array(fc.oneof(fc.string(), fc.constantFrom('10.0.0.1', 'fd00::1', '999.1.1.1')), { maxLength: 3 }),
        }),
        ({ asn, routerId, peers, cidrs, ips }) => {
          const node: Node = {
            metadata: { name: 'n', annotations: { 'podroute.io/asn': asn, 'podroute.io/router-id': routerId, 'podroute.io/peers': peers } },
            spec: { podCIDRs: cidrs },
            status: { addresses: ips.map((address) => ({ type: 'InternalIP', address })) },
          };
          const info = nodeInfoFromObject(node);
          expect(info.warnings.join('\n')).not.to.match(/"password":"p"/);
          for (const peer of info.annotationPeers) expect(peer).not.to.have.property('password');
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('topology files of arbitrary text: parsed, or a TopologyError listing the problems', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.json(), fc.constantFrom('routers: 5', 'nodes: [{name: a}]', 'cluster: {podRanges: [10.0.0.0/99]}')), (text) => {
        try {
          parseTopology(text);
        } catch (err) {
          expect(err).to.be.instanceOf(TopologyError);
        }
      }),
      { numRuns: RUNS },
    );
  });
});
