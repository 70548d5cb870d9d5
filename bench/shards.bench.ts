// Shard write and read throughput against plain file I/O of the same bytes on the same disk, in one run.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import tar from 'tar-stream';
import { LocalStorage } from '../shards/storage/local.ts';
import { ShardWriter } from '../shards/shard-writer.ts';
import { readShard } from '../shards/tar-reader.ts';
import type { Sample } from '../shards/sample.ts';
import { seededRandom } from '../sandbox/images.ts';
import { bestOf, isQuick, MB, ratio, report } from './harness.ts';

const root = join(process.cwd(), '.bench-tmp', 'shards');
const sampleCount = isQuick() ? 300 : 3000;

function makeSamples(): Sample[] {
  const random = seededRandom(7);
  return Array.from({ length: sampleCount }, (_, i) => {
    const jpg = Buffer.allocUnsafe(20_000 + Math.floor(random() * 120_000));
    for (let j = 0; j < jpg.length; j += 4096) jpg[j] = Math.floor(random() * 256);
    return {
      key: String(i).padStart(9, '0'),
      fields: { jpg, txt: Buffer.from(`caption number ${i}`), json: Buffer.from(JSON.stringify({ key: i, tokens: 12 })) },
    };
  });
}

async function writeShards(samples: Sample[], dir: string): Promise<string[]> {
  await rm(dir, { recursive: true, force: true });
  const writer = new ShardWriter({ storage: new LocalStorage(dir), prefix: 'bench', maxBytes: 64 * 1024 * 1024 });
  for (const sample of samples) await writer.write(sample);
  return (await writer.close()).map((r) => join(dir, r.shard));
}

async function plainWrite(files: Buffer[], dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (const [i, bytes] of files.entries()) {
    const out = createWriteStream(join(dir, `plain-${i}.bin`));
    // Same 1 MiB pieces a streaming writer hands the disk.
    for (let at = 0; at < bytes.length; at += 1 << 20) {
      if (!out.write(bytes.subarray(at, at + (1 << 20)))) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    // The shard writer makes each file durable before publishing it; the baseline does the same.
    const handle = await open(join(dir, `plain-${i}.bin`), 'r+');
    await handle.sync();
    await handle.close();
  }
}

async function rawRead(paths: string[]): Promise<number> {
  let n = 0;
  for (const path of paths) for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) n += (chunk as Buffer).length;
  return n;
}

async function m4Read(paths: string[]): Promise<number> {
  let n = 0;
  for (const path of paths) for await (const _ of readShard(path)) n++;
  return n;
}

async function tarStreamRead(paths: string[]): Promise<number> {
  let n = 0;
  for (const path of paths) {
    const extract = tar.extract();
    createReadStream(path, { highWaterMark: 1 << 20 }).pipe(extract);
    for await (const entry of extract) {
      const parts: Buffer[] = [];
      for await (const chunk of entry) parts.push(chunk as Buffer);
      Buffer.concat(parts);
      n++;
    }
  }
  return n;
}

const samples = makeSamples();
const shardPaths = await writeShards(samples, join(root, 'm4'));
const tarBytes = await Promise.all(shardPaths.map((p) => readFile(p)));
const totalBytes = tarBytes.reduce((n, b) => n + b.length, 0);
const rounds = isQuick() ? 2 : 3;

const write = await bestOf(rounds, {
  plain: () => plainWrite(tarBytes, join(root, 'plain')),
  m4data: () => writeShards(samples, join(root, 'm4')),
});
// Reads take a few rounds to warm up (JIT): five rounds let both sides reach their steady speed.
const read = await bestOf(isQuick() ? 2 : 5, {
  raw: () => rawRead(shardPaths),
  m4data: () => m4Read(shardPaths),
  tarStream: () => tarStreamRead(shardPaths),
});
await rm(root, { recursive: true, force: true });

const mbps = (seconds: number) => Math.round(totalBytes / MB / seconds);
console.log(`${sampleCount} samples, ${shardPaths.length} shards, ${Math.round(totalBytes / MB)} MB`);
console.log(
  `write: m4data ${mbps(write.m4data!)} MB/s, plain sequential write ${mbps(write.plain!)} MB/s, ratio ${ratio(write.plain!, write.m4data!)} (aim >= 0.8)`,
);
console.log(
  `read:  m4data ${mbps(read.m4data!)} MB/s (${Math.round(sampleCount / read.m4data!)} samples/s), raw read ${mbps(read.raw!)} MB/s, ratio ` +
    `${ratio(read.raw!, read.m4data!)} (aim >= 0.8)`,
);
console.log(`read:  tar-stream extract ${mbps(read.tarStream!)} MB/s, m4data/tar-stream ${ratio(read.tarStream!, read.m4data!)}`);
report('shards', {
  samples: sampleCount,
  megabytes: Math.round(totalBytes / MB),
  writeMBps: mbps(write.m4data!),
  plainWriteMBps: mbps(write.plain!),
  writeRatio: ratio(write.plain!, write.m4data!),
  readMBps: mbps(read.m4data!),
  readSamplesPerSecond: Math.round(sampleCount / read.m4data!),
  rawReadMBps: mbps(read.raw!),
  readRatio: ratio(read.raw!, read.m4data!),
  tarStreamReadMBps: mbps(read.tarStream!),
});
