// The peer of the upload benchmark: a minimal @tus/server v2 + @tus/file-store, nothing else
// (no auth, no hashing, no fsync). Run as a child process by bench/run.mjs:
//   PORT=... TUS_DIR=... node bench/tus-peer.mjs      → endpoint http://127.0.0.1:PORT/files/
import http from 'node:http';
import { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';

const port = Number(process.env.PORT);
const directory = process.env.TUS_DIR;
if (!port || !directory) {
  process.stderr.write('tus-peer: PORT and TUS_DIR are required\n');
  process.exit(2);
}

const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const server = http.createServer((req, res) => {
  tus.handle(req, res).catch((error) => {
    process.stderr.write(`tus-peer: ${error.stack ?? error}\n`);
    if (!res.headersSent) res.writeHead(500);
    res.end();
  });
});
server.requestTimeout = 0;
server.listen(port, '127.0.0.1', () => process.stdout.write(`tus-peer listening on ${port}\n`));

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
