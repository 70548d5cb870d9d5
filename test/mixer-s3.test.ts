import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Storage } from '../shards/storage/s3.ts';
import { applyEnv, startS3Server } from '../sandbox/s3-server.ts';
import { collect, planFour, writeFourSources } from './helpers/mixtures.ts';

test('sources on S3 stream the same samples as on local disk; a corrupt shard there is skipped and reported', async (t) => {
  const s3 = await startS3Server();
  const dir = await mkdtemp(join(tmpdir(), 'm4-mix-s3-'));
  t.after(async () => {
    await s3.stop();
    await rm(dir, { recursive: true, force: true });
  });
  t.after(applyEnv(s3.env));

  const local = await writeFourSources(join(dir, 'data'));
  const remote = await writeFourSources(`s3://${s3.bucket}/data`);
  const localMixture = await planFour(join(dir, 'mix'), local, { mode: 'epochs' });
  const fromDisk = await collect(localMixture.stream({ rank: 1, worldSize: 2 }));
  const fromS3 = await collect((await planFour(`s3://${s3.bucket}/mix`, remote, { mode: 'epochs' })).stream({ rank: 1, worldSize: 2 }));
  assert.ok(fromDisk.length > 100);
  assert.deepEqual(
    fromS3.map((s) => [s.position, s.source, s.key, s.fields]),
    fromDisk.map((s) => [s.position, s.source, s.key, s.fields]),
  );
  assert.match(fromS3[0]!.shard, /^s3:\/\//);

  await new S3Storage(`s3://${s3.bucket}/data/obelisc`).write('obelisc-000001.tar', Buffer.alloc(4096, 1));
  const stream = (await planFour(`s3://${s3.bucket}/mix-bad`, remote, { mode: 'epochs' })).stream();
  const samples = await collect(stream);
  const report = stream.realised();
  assert.equal(report.badShards.length, 1);
  assert.match(report.badShards[0]!, /s3:\/\/.*obelisc-000001\.tar/);
  assert.equal(report.sources.find((s) => s.name === 'obelisc')!.lostSamples, 6 * 3);
  assert.equal(samples.length, (await collect(localMixture.stream())).length - 6 * 3);
});
