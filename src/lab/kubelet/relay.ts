// The node-local door to the lab API server: a TCP listener inside the node's netns whose connections are piped
// byte for byte to the API server's unix socket (so watches stream). The node's processes use it like a
// kube-apiserver address; the API server itself is never on a node network.
import net from 'node:net';

export interface ApiRelayOptions {
  host: string;
  port: number;
  /** The API server's unix socket. */
  apiSocket: string;
  onError?: (err: Error) => void;
}

export interface ApiRelay {
  address: { host: string; port: number };
  close(): Promise<void>;
}

export async function startApiRelay(options: ApiRelayOptions): Promise<ApiRelay> {
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(options.apiSocket);
    open.add(client);
    open.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', () => {
      open.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => {
      open.delete(upstream);
      client.destroy();
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.on('error', (err) => options.onError?.(err));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: { host: options.host, port: options.port },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
