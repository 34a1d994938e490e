// bench/run.ts hands its --prefix to bench/policy.js: two runs (make bench and the bench smoke test, or two
// engineers) must never share the network namespaces the policy benchmark writes into. Sharing them is how a
// run's remembered kernel state went stale and its next restore was refused ("Chain ... does not exist").
import { expect } from 'chai';
import { parseArgs } from '../../../bench/run.js';

describe('bench/run policy arguments', () => {
  it('passes the run prefix to bench/policy, at full and at smoke size', () => {
    for (const argv of [['--prefix', 'hq'], ['--quick', '--prefix', 'hq']]) {
      const args = parseArgs(argv).options.policyArgs;
      expect(args[args.indexOf('--prefix') + 1], argv.join(' ')).to.equal('hq');
    }
  });

  it('--quick runs every benchmark but bfd-soak (a soak of seconds says nothing), unless --only names it', () => {
    expect(parseArgs([]).options.only).to.include.members(['scale', 'bfd-soak']);
    const quick = parseArgs(['--quick']).options.only;
    expect(quick).to.not.include.members(['bfd-soak']);
    expect(quick).to.include.members(['route', 'services', 'hostile-policy', 'scale']);
    expect(parseArgs(['--quick', '--only', 'bfd-soak']).options.only).to.deep.equal(['bfd-soak']);
  });
});
