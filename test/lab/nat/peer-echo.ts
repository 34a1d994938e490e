// Run inside a test netns: `serve PORT ADDR...` answers every TCP connection (any address) and UDP datagram (to
// one of ADDR) on PORT with the source address it saw. UDP binds each address on its own so that a reply leaves
// from the address the datagram was sent to (an unbound socket lets the kernel pick another source, which
// conntrack would not match to the masqueraded flow); `probe tcp|udp HOST PORT` prints that answer (exit 1 on timeout or error).
import dgram from 'node:dgram';
import net from 'node:net';

function seenAddress(address: string | undefined): string {
  const text = address ?? '?';
  return text.startsWith('::ffff:') && text.includes('.') ? text.slice('::ffff:'.length) : text;
}

function serve(port: number, udpAddresses: string[]): void {
  const tcp = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.end(seenAddress(socket.remoteAddress) + '\n');
  });
  tcp.listen({ port, host: '::', ipv6Only: false });
  let listening = 0;
  const ready = () => {
    if (++listening === udpAddresses.length + 1) process.stdout.write('ready\n');
  };
  tcp.on('listening', ready);
  for (const address of udpAddresses) {
    const udp = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
    udp.on('message', (_msg, rinfo) => udp.send(seenAddress(rinfo.address) + '\n', rinfo.port, rinfo.address));
    udp.on('listening', ready);
    udp.bind(port, address);
  }
}

function probe(proto: string, host: string, port: number): void {
  const timer = setTimeout(() => {
    process.stderr.write(`timeout: ${proto} ${host} ${port}\n`);
    process.exit(1);
  }, 3000);
  const done = (answer: string) => {
    clearTimeout(timer);
    process.stdout.write(answer.trim() + '\n');
    process.exit(0);
  };
  const fail = (error: Error) => {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  };
  if (proto === 'tcp') {
    let data = '';
    const socket = net.connect({ host, port });
    socket.on('data', (chunk) => (data += chunk.toString()));
    socket.on('end', () => done(data));
    socket.on('error', fail);
  } else {
    const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    socket.on('message', (msg) => done(msg.toString()));
    socket.on('error', fail);
    socket.send('probe\n', port, host);
  }
}

const [mode, a, b, c, ...rest] = process.argv.slice(2);
if (mode === 'serve') serve(Number(a), [b, c, ...rest].filter((x): x is string => x !== undefined));
else if (mode === 'probe' && a !== undefined && b !== undefined) probe(a, b, Number(c));
else {
  process.stderr.write('usage: peer-echo serve PORT UDP_ADDR... | probe tcp|udp HOST PORT\n');
  process.exit(2);
}
