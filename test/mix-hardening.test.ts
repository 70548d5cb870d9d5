import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFourSources } from './helpers/mixtures.ts';
import { runCli } from './helpers/run-cli.ts';

// Issue 13: what hostile input and a new user did to `m4data mix`, each through the CLI as a user meets it.

const dir = await mkdtemp(join(tmpdir(), 'm4-mix-harden-'));
test.after(() => rm(dir, { recursive: true, force: true }));
const locations = await writeFourSources(join(dir, 'data'));
const sources = [...locations].flatMap(([name, location]) => ['--source', `${name}=${location}`]);
const mix = (...args: string[]) => runCli(['mix', '--profile', 'atum-9b', ...sources, '--budget', '4000', '--quiet', ...args]);

function errorLine(stderr: string): string {
  return stderr.split('\n').find((line) => line.startsWith('m4data: ')) ?? `(no error line in ${JSON.stringify(stderr)})`;
}

async function snapshot(folder: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(folder)).sort()) out[name] = (await readFile(join(folder, name))).toString('base64');
  return out;
}

test("mix never writes into one of its sources, nor into a dataset's folder it was not given (nothing changes there)", async () => {
  const laion = locations.get('laion')!;
  const before = await snapshot(laion);
  const intoSource = await mix('--output', laion, '--materialize');
  assert.equal(intoSource.code, 2, intoSource.err);
  assert.match(
    errorLine(intoSource.err),
    /the mixture's output .*laion is, or lies inside, source laion's dataset .*a mix never writes into a dataset it reads.*\[E_USAGE\]$/,
  );
  const inside = await mix('--output', join(laion, 'mix'));
  assert.equal(inside.code, 2, inside.err);
  // A built dataset that is not among the sources: its files are not the mixture's.
  const other = join(dir, 'other-dataset');
  await cp(laion, other, { recursive: true });
  const intoOther = await mix('--output', other, '--materialize');
  assert.equal(intoOther.code, 2, intoOther.err);
  assert.match(
    errorLine(intoOther.err),
    /holds files that are not this mixture's \(laion-000000\.idx\.json, laion-000000\.tar, laion-000002\.idx\.json and \d+ more\): give a new or empty output \(nothing was changed\)/,
  );
  assert.deepEqual(await snapshot(laion), before);
  assert.deepEqual(await snapshot(other), before);
  // A user's own file in the output.
  const mine = join(dir, 'mine');
  await mkdir(mine);
  await writeFile(join(mine, 'notes.txt'), 'mine');
  const r = await mix('--output', mine);
  assert.equal(r.code, 2);
  assert.match(errorLine(r.err), /holds files that are not this mixture's \(notes\.txt\)/);
  assert.deepEqual(await readdir(mine), ['notes.txt']);
});

test('mix --output on /proc, on a file, or through a file is refused at once with exit 2 (it used to spin forever)', async () => {
  const file = join(dir, 'a-file');
  await writeFile(file, 'x');
  for (const [output, message] of [
    ['/proc/m4data-mix', /\/proc is on the kernel's proc file system, where no file can be stored/],
    [file, /is an existing file, not a folder/],
    [join(file, 'mix'), /a-file is a file, not a folder/],
  ] as const) {
    const r = await runCli(['mix', '--profile', 'atum-9b', ...sources, '--budget', '4000', '--output', output], { timeoutMs: 30_000 });
    assert.equal(r.killed, false, `${output}: it hung`);
    assert.equal(r.code, 2, r.err);
    assert.match(errorLine(r.err), message);
  }
});

test('a rerun of --materialize cleans what an earlier run left: temporary files, and shards of another --samples-per-shard', async () => {
  const out = join(dir, 'rerun');
  const first = await mix('--output', out, '--materialize', '--samples-per-shard', '5');
  assert.equal(first.code, 0, first.err);
  const many = (await readdir(out)).filter((n) => n.endsWith('.tar')).length;
  assert.ok(many > 3, `${many} shards of 5 samples`);
  // What a killed run leaves: a shard and an index half-written under their temporary names.
  await writeFile(join(out, 'mix-000000.tar.tmp-0123456789ab'), Buffer.alloc(7_000_000));
  await writeFile(join(out, `mix-${String(many + 4).padStart(6, '0')}.idx.json.tmp-ba9876543210`), '{');
  const second = await mix('--output', out, '--materialize', '--samples-per-shard', '1000');
  assert.equal(second.code, 0, second.err);
  const names = await readdir(out);
  assert.deepEqual(names.filter((n) => n.startsWith('mix-')).sort(), ['mix-000000.idx.json', 'mix-000000.tar']);
  assert.deepEqual(
    names.filter((n) => n.includes('.tmp-')),
    [],
  );
  const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { shards: { shard: string }[] };
  assert.deepEqual(
    manifest.shards.map((s) => s.shard),
    ['mix-000000.tar'],
  );
});

test('budgets that are not finite or round to 0 tokens are refused, as is a dataset given for the wrong source', async () => {
  for (const budget of ['1e400', '0.4']) {
    const r = await runCli(['mix', '--profile', 'atum-9b', ...sources, '--budget', budget, '--output', join(dir, 'budget')]);
    assert.equal(r.code, 2, budget);
    assert.match(errorLine(r.err), budget === '1e400' ? /too large a count/ : /rounds to 0 tokens/);
  }
  const swapped = sources.map((arg) => (arg.startsWith('pmd=') ? `pmd=${locations.get('obelisc')}` : arg));
  const wrong = await runCli(['mix', '--profile', 'atum-9b', ...swapped, '--budget', '4000', '--output', join(dir, 'swapped')]);
  assert.equal(wrong.code, 2, wrong.err);
  assert.match(errorLine(wrong.err), /obelisc holds documents \(built with --source obelisc\), but the profile's pmd is made of pairs/);
  const sameLayout = sources.map((arg) => (arg.startsWith('pmd=') ? `pmd=${locations.get('laion')}` : arg));
  const warned = await runCli(['mix', '--profile', 'atum-9b', ...sameLayout, '--budget', '4000', '--output', join(dir, 'warned')]);
  assert.equal(warned.code, 0, warned.err);
  assert.match(warned.out, /^WARNING: pmd: .*laion was built as laion$/m);
});

test('mix reads an http(s) source only where --allow-private-network allows its address, as build does', async () => {
  const root = join(dir, 'data');
  const server = createServer((req, res) => {
    readFile(join(root, decodeURIComponent(new URL(req.url!, 'http://x').pathname)))
      .then((body) => {
        res.writeHead(200, { 'content-length': body.length });
        res.end(req.method === 'HEAD' ? undefined : body);
      })
      .catch(() => res.writeHead(404).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/pmd`;
    const overHttp = sources.map((arg) => (arg.startsWith('pmd=') ? `pmd=${url}` : arg));
    const refused = await runCli(['mix', '--profile', 'atum-9b', ...overHttp, '--budget', '4000', '--output', join(dir, 'http-refused')]);
    assert.equal(refused.code, 2, refused.err);
    assert.match(
      errorLine(refused.err),
      /blocked address 127\.0\.0\.1 \(loopback\): http:\/\/127\.0\.0\.1:\d+\/pmd is not reached unless --allow-private-network allows it/,
    );
    const allowed = await runCli([
      'mix',
      '--profile',
      'atum-9b',
      ...overHttp,
      '--budget',
      '4000',
      '--output',
      join(dir, 'http-allowed'),
      '--allow-private-network',
      '127.0.0.1/32',
    ]);
    assert.equal(allowed.code, 0, allowed.err);
  } finally {
    server.close();
  }
});
