// The lab API server as a pod sees it in a cluster: HTTPS with a certificate the service-account CA signs
// (ca.crt of the projected volume), at KUBERNETES_SERVICE_HOST:PORT, and a bearer token required on every
// request, as kube-apiserver with --anonymous-auth=false: a missing or wrong token gets 401 Unauthorized, the
// Status kube-apiserver sends. Requests with the pod's token go on to the lab API server's unix socket (watches
// stream through). Run inside a lab node's netns:
//   node api-tls-front.js --listen 127.0.0.1:6444 --cert C --key K --token-file T --api-socket S
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { parseArgs } from 'node:util';

const UNAUTHORIZED = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });

function main(): void {
  const { values } = parseArgs({ options: { listen: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, 'token-file': { type: 'string' }, 'api-socket': { type: 'string' } } });
  const [host, port] = (values.listen ?? '').split(/:(?=\d+$)/);
  const token = readFileSync(values['token-file']!, 'utf8').trim();
  const server = https.createServer({ cert: readFileSync(values.cert!), key: readFileSync(values.key!) }, (req, res) => {
    if (req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(UNAUTHORIZED) });
      res.end(UNAUTHORIZED);
      return;
    }
    const upstream = http.request({ socketPath: values['api-socket'], method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  server.listen({ host, port: Number(port) }, () => process.stdout.write(`listening ${values.listen}\n`));
  process.on('SIGTERM', () => process.exit(0));
}

main();
