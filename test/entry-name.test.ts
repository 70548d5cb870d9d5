import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkEntryName, splitEntryName } from '../shards/entry-name.ts';

// WebDataset's rule as a pattern (its `base_plus_ext`, lower-casing the field): the key is everything up to the first
// dot of the basename, which must have something before that dot.
const PATTERN = /^((?:.*\/|)[^./]+)\.([^/]*)$/;

function byPattern(name: string): { key: string; field: string } | undefined {
  const match = PATTERN.exec(name);
  return match ? { key: match[1]!, field: match[2]!.toLowerCase() } : undefined;
}

test('entry names split into key and field as the pattern splits them', () => {
  assert.deepEqual(splitEntryName('000123.jpg'), { key: '000123', field: 'jpg' });
  assert.deepEqual(splitEntryName('dir/sub/000123.0.JPG'), { key: 'dir/sub/000123', field: '0.jpg' });
  assert.deepEqual(splitEntryName('a.b/c.txt'), { key: 'a.b/c', field: 'txt' });
  assert.deepEqual(splitEntryName('x.'), { key: 'x', field: '' });
  assert.equal(splitEntryName('noext'), undefined);
  assert.equal(splitEntryName('dir/.hidden'), undefined);
  assert.equal(splitEntryName('dir/'), undefined);
  // `.` matches no line terminator: a name with one before its last slash is no sample.
  assert.equal(splitEntryName('x\ny/a.jpg'), undefined);
  assert.deepEqual(splitEntryName('a/b\nc.jpg'), { key: 'a/b\nc', field: 'jpg' });
  const name = fc.array(fc.constantFrom('a', 'B', '0', '_', '.', '/', '\n', '\r', '\u2028', 'é'), { maxLength: 12 }).map((c) => c.join(''));
  fc.assert(
    fc.property(name, (n) => assert.deepEqual(splitEntryName(n), byPattern(n))),
    { numRuns: 5000 },
  );
});

test('unsafe entry names are refused, safe ones with dots pass', () => {
  for (const bad of ['../x.jpg', 'a/../x.jpg', 'a/..', 'a\\..\\x.jpg', '..', '/abs.jpg', '\\abs.jpg', 'C:x.jpg', 'a\0b.jpg']) {
    assert.throws(() => checkEntryName(bad), /unsafe tar entry name/, bad);
  }
  for (const good of ['a..b.jpg', 'x/...jpg', '.../x.jpg', 'a/b.c/d.jpg', '000001.json']) checkEntryName(good);
});
