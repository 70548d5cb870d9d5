import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { writeSyntheticDataset } from '../sandbox/datasets.ts';
import { applyEnv, startS3Server } from '../sandbox/s3-server.ts';

// Issue 13, item 26: every command of the README's mixing, bridge and training sections runs as written, in order, in a
// folder holding the built sources those commands name (PMD on an S3 server, as `s3://bucket/...`).

const ROOT = new URL('..', import.meta.url).pathname;
const BIN = join(ROOT, 'bin', 'm4data.mjs');
/** What needs the internet or hardware this machine lacks, and is left out: GPU installs, torchrun. */
const NEEDS_ELSEWHERE = /^(npm install|npx? .*tfjs-node|torchrun)\b/;

/** The `sh` blocks of one `## ` section of the README (its `###` subsections included), as commands: continuations joined. */
export function sectionCommands(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `README has no section "## ${heading}"`);
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const commands: string[] = [];
  for (const block of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    let pending = '';
    for (const line of block[1]!.split('\n')) {
      const code = line.replace(/\s+# .*$/, '').trimEnd();
      if (code.trim() === '' || code.trimStart().startsWith('#')) continue;
      if (code.endsWith('\\')) {
        pending += `${code.slice(0, -1).trimEnd()} `;
        continue;
      }
      commands.push(`${pending}${code.trim()}`);
      pending = '';
    }
  }
  return commands;
}

function bash(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-o', 'pipefail', '-c', command], { cwd, env });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

test("the README's mix, bridge and training examples run as written, in order", async (t) => {
  if ((await bash('python3 -c "import numpy"', ROOT, process.env)).code !== 0) return t.skip('python3 without numpy: the PyTorch feed example needs it');
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const commands = ['Mixing sources', 'Trainer bridge', 'Training'].flatMap((heading) => sectionCommands(readme, heading));
  const dir = await mkdtemp(join(tmpdir(), 'm4-readme-'));
  const s3 = await startS3Server({ bucket: 'bucket' });
  try {
    // The user's folder: the sources the examples name, built, and `m4data` on PATH as `npm install -g` puts it.
    for (const [name, layout] of [
      ['laion', 'pair'],
      ['obelisc', 'document'],
      ['wikipedia', 'document'],
    ] as const) {
      await writeSyntheticDataset({ location: join(dir, 'out', name), source: name, layout, shardSamples: [40, 30] });
    }
    const env = { ...process.env, ...s3.env, PATH: `${join(dir, 'bin')}:${process.env.PATH}` };
    const undo = applyEnv(s3.env);
    try {
      await writeSyntheticDataset({ location: 's3://bucket/datasets/pmd', source: 'pmd', layout: 'pair', shardSamples: [60, 50] });
    } finally {
      undo();
    }
    await mkdir(join(dir, 'bin'));
    await writeFile(join(dir, 'bin', 'm4data'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`);
    await chmod(join(dir, 'bin', 'm4data'), 0o755);
    await mkdir(join(dir, 'examples'));
    await copyFile(join(ROOT, 'examples', 'pytorch_feed.py'), join(dir, 'examples', 'pytorch_feed.py'));
    let ran = 0;
    for (const command of commands) {
      if (NEEDS_ELSEWHERE.test(command)) continue;
      const r = await bash(command, dir, env);
      assert.equal(r.code, 0, `$ ${command}\n${r.out.slice(-2000)}\n${r.err.slice(-2000)}`);
      ran++;
    }
    assert.ok(ran >= 8, `${ran} commands ran`);
  } finally {
    await s3.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test('the PyTorch feed finds m4data on PATH when copied beside a script of its own', async (t) => {
  if ((await bash('python3 -c "import numpy"', ROOT, process.env)).code !== 0) return t.skip('python3 without numpy');
  const dir = await mkdtemp(join(tmpdir(), 'm4-feed-'));
  // A PATH with python3 (and its numpy) but no m4data, as a user's machine without a global install.
  const python = dirname((await bash('command -v python3', ROOT, process.env)).out.trim());
  const bare = `${python}:/usr/bin:/bin`;
  try {
    await copyFile(join(ROOT, 'examples', 'pytorch_feed.py'), join(dir, 'pytorch_feed.py'));
    const script = 'from pytorch_feed import m4data_command\nprint(" ".join(m4data_command()))';
    const none = await bash(`python3 -c '${script}'`, dir, { ...process.env, PATH: bare });
    assert.notEqual(none.code, 0);
    assert.match(none.err, /m4data not found: pass M4DataBatches\(\.\.\., m4data='npx m4data'\)/);
    await mkdir(join(dir, 'bin'));
    await writeFile(join(dir, 'bin', 'm4data'), '#!/bin/sh\n');
    await chmod(join(dir, 'bin', 'm4data'), 0o755);
    const found = await bash(`python3 -c '${script}'`, dir, { ...process.env, PATH: `${join(dir, 'bin')}:${bare}` });
    assert.equal(found.code, 0, found.err);
    assert.equal(found.out.trim(), join(dir, 'bin', 'm4data'));
    const given = await bash(`M4DATA="npx m4data" python3 -c '${script}'`, dir, { ...process.env, PATH: bare });
    assert.equal(given.out.trim(), 'npx m4data');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
