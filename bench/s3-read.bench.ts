/**
 * S3 backend benchmark against s3rver on 127.0.0.1, one run, same server for both sides:
 *
 *   node --import tsx bench/s3-read.bench.ts [sizeMiB]      (or M4_BENCH_S3_MB=32, or --quick for 32; default 256)
 *
 * Reads: (a) a raw unsigned GET of the object with undici, body consumed, against (b) S3Storage.read of it.
 * Writes: (a) one raw unsigned PUT of the bytes against (b) S3Storage.write of them as a stream (multipart).
 * Each pair alternates 3 times and keeps each side's best. Ends with one JSON line {"bench":"s3-read", ...}.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { S3Storage } from '../shards/storage/s3.ts';
import { applyEnv, startS3Server } from '../sandbox/s3-server.ts';
import { bestOf, isQuick, MB, ratio, report } from './harness.ts';

const MiB = 1024 * 1024;
const sizeArg = process.argv.slice(2).find((a) => /^\d+$/.test(a));
const sizeMiB = Number(sizeArg ?? process.env.M4_BENCH_S3_MB ?? (isQuick() ? 32 : 256));
const size = sizeMiB * MiB;
const ROUNDS = 3;

const s3 = await startS3Server({ bucket: 'bench' });
const restoreEnv = applyEnv(s3.env);
// An interrupted run still removes the server's folder (the object alone is sizeMiB, twice over).
process.once('SIGINT', () => void s3.stop().then(() => process.exit(130)));

try {
  const storage = new S3Storage(`s3://${s3.bucket}/bench`);
  const data = randomBytes(size);
  const url = (key: string): string => `${s3.endpoint}/${s3.bucket}/bench/${key}`;

  async function* pieces(): AsyncIterable<Uint8Array> {
    for (let at = 0; at < size; at += MiB) yield data.subarray(at, at + MiB); // what a shard writer hands over
  }
  const writes = await bestOf(ROUNDS, {
    rawPut: async () => {
      const res = await request(url('raw.bin'), { method: 'PUT', body: data, headers: { 'content-length': String(size) } });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`raw PUT: status ${res.statusCode}`);
    },
    s3Write: async () => {
      const written = await storage.write('object.bin', pieces());
      if (written.size !== size) throw new Error(`S3Storage.write wrote ${written.size} bytes, not ${size}`);
    },
  });

  const expectSize = (what: string, n: number): void => {
    if (n !== size) throw new Error(`${what} read ${n} bytes, not ${size}`);
  };
  const reads = await bestOf(ROUNDS, {
    rawGet: async () => {
      const res = await request(url('object.bin'));
      let n = 0;
      for await (const chunk of res.body) n += (chunk as Buffer).length;
      expectSize('raw GET', n);
    },
    s3Read: async () => {
      let n = 0;
      for await (const chunk of storage.read('object.bin')) n += chunk.byteLength;
      expectSize('S3Storage.read', n);
    },
  });

  const mbps = (seconds: number | undefined): number => Math.round(size / MB / (seconds ?? NaN));
  const figures = {
    sizeMiB,
    rounds: ROUNDS,
    rawGetMBps: mbps(reads.rawGet),
    s3ReadMBps: mbps(reads.s3Read),
    readRatio: ratio(reads.rawGet!, reads.s3Read!),
    rawPutMBps: mbps(writes.rawPut),
    s3WriteMBps: mbps(writes.s3Write),
    writeRatio: ratio(writes.rawPut!, writes.s3Write!),
  };
  console.log(`object ${sizeMiB} MiB on s3rver, best of ${ROUNDS} alternating rounds (MB = 10^6 bytes)`);
  const f = figures;
  console.log(`read   raw GET ${f.rawGetMBps} MB/s   S3Storage.read ${f.s3ReadMBps} MB/s    ratio ${f.readRatio} (aim >= 0.8)`);
  console.log(`write  raw PUT ${f.rawPutMBps} MB/s   S3Storage.write ${f.s3WriteMBps} MB/s   ratio ${f.writeRatio}`);
  report('s3-read', figures);
} finally {
  restoreEnv();
  await s3.stop();
}
