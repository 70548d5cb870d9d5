import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { isM4Error } from '../core/errors.ts';
import { selectBackend } from '../trainer/backend.ts';

const NATIVE = ['tfjs-node-gpu', 'tfjs-node'] as const;
const installed = (name: string) => {
  try {
    createRequire(import.meta.url).resolve(`@tensorflow/${name}`);
    return true;
  } catch {
    return false;
  }
};
const absent = NATIVE.filter((name) => !installed(name));

test('forcing a backend that is not installed fails with E_USAGE naming the npm command that adds it', {
  skip: absent.length === 0 && 'both native backends are installed',
}, async () => {
  for (const name of absent) {
    await assert.rejects(selectBackend(name), (err) => isM4Error(err, 'E_USAGE') && err.message.includes(`npm install @tensorflow/${name}@`));
  }
});

test('auto falls through the absent native backends to wasm, and says which it skipped', {
  skip: absent.length < NATIVE.length && 'a native backend is installed',
}, async () => {
  const got = await selectBackend('auto');
  assert.equal(got.name, 'wasm');
  assert.deepEqual(
    got.skipped.map((s) => s.name),
    [...NATIVE],
  );
  assert.equal((await selectBackend('cpu')).tfName, 'cpu');
});
