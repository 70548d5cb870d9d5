/**
 * Image server for bench/build.bench.ts, run as a child process (fork, with IPC) so that serving the images does not
 * share the event loop of the process being measured. It only shares the machine's cores, and its CPU time is
 * reported on request so the benchmark can show it.
 *
 *   fork('bench/peer/image-server.ts', [listFile], { execArgv: ['--import', 'tsx'] })
 *
 * listFile holds one image path a line; each is loaded into memory and served at /f/<basename> by the test suite's
 * hostile server (plain 200 answers with Content-Length for these routes). Messages:
 *   child -> parent  { type: 'ready', origin, files, bytes }      once listening
 *   parent -> child  { type: 'usage' }                            child answers { type: 'usage', cpuMicros, rss }
 * The child closes its server and exits when the parent disconnects (or dies).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { startHostileServer, type HostileFile } from '../../sandbox/hostile-server.ts';

const listFile = process.argv[2];
if (listFile === undefined || process.send === undefined) {
  console.error('usage: fork bench/peer/image-server.ts <list-file> (with an IPC channel)');
  process.exit(2);
}
const send = process.send.bind(process);

const paths = (await readFile(listFile, 'utf8')).split('\n').filter((line) => line !== '');
const files = new Map<string, HostileFile>();
let bytes = 0;
for (const file of paths) {
  const body = await readFile(file);
  bytes += body.length;
  files.set(path.basename(file), { body, contentType: file.endsWith('.png') ? 'image/png' : 'image/jpeg' });
}
const server = await startHostileServer(files);

process.on('message', (message: { type?: string }) => {
  if (message.type === 'usage') {
    const cpu = process.cpuUsage();
    send({ type: 'usage', cpuMicros: cpu.user + cpu.system, rss: process.memoryUsage.rss() });
  }
});
process.once('disconnect', () => {
  void server.close().finally(() => process.exit(0));
});
send({ type: 'ready', origin: server.url(''), files: files.size, bytes });
