// Runs inside a benchmark's node namespace: relays a unix socket on the shared filesystem to HOST:PORT in that
// namespace (the agent's metrics server), so the benchmark scrapes /metrics without a process per scrape.
//   node bench/metrics-relay.js --socket /path/metrics.sock --port 9476 [--host 127.0.0.1]
import { rmSync } from 'node:fs';
import net from 'node:net';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const socket = flag('socket');
const port = Number(flag('port'));
const host = flag('host') ?? '127.0.0.1';
if (socket === undefined || !Number.isInteger(port) || port < 1) {
  process.stderr.write('metrics-relay: --socket and --port are required\n');
  process.exit(2);
}
const server = net.createServer((client) => {
  const upstream = net.connect(port, host);
  const drop = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', drop);
  upstream.on('error', drop);
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
  client.pipe(upstream);
  upstream.pipe(client);
});
rmSync(socket, { force: true });
server.listen(socket, () => process.stdout.write('ready\n'));
const stop = (): void => {
  server.close();
  rmSync(socket, { force: true });
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
