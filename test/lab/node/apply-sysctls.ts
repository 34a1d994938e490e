// Run inside a test netns (`ip netns exec NS node apply-sysctls.js`): applies podroute's node sysctls to that
// netns's /proc/sys, the way the agent does in its node netns, and prints the result (or the error) as JSON.
import { NodeSetupError } from '../../../src/node/errors.js';
import { applySysctls } from '../../../src/node/sysctl.js';

try {
  process.stdout.write(JSON.stringify(await applySysctls()) + '\n');
} catch (error) {
  const code = error instanceof NodeSetupError ? error.code : 'UNEXPECTED';
  process.stdout.write(JSON.stringify({ error: { code, message: (error as Error).message } }) + '\n');
  process.exitCode = 1;
}
