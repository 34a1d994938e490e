// Runs inside a benchmark's node namespace: relays 127.0.0.1:PORT there to the benchmark's in-process lab API
// server (a unix socket), so `podroute agent` in that namespace reaches it like a kube-apiserver.
//   node bench/api-relay.js --socket /path/api.sock [--port 6443]
import { startApiRelay } from '../src/lab/kubelet/relay.js';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const socket = flag('socket');
if (socket === undefined) {
  process.stderr.write('api-relay: --socket is required\n');
  process.exit(2);
}
const relay = await startApiRelay({ host: '127.0.0.1', port: Number(flag('port') ?? 6443), apiSocket: socket, onError: (err) => process.stderr.write(`api-relay: ${err.message}\n`) });
process.stdout.write('ready\n');
const stop = (): void => {
  void relay.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
