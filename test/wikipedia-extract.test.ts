import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import fc from 'fast-check';
import { extractArticle, mathText, type ArticleItem } from '../pipelines/wikipedia/extract-article.ts';
import { walkHtml } from '../pipelines/wikipedia/html-walker.ts';
import { checkWikimediaBase, fileUrls, mirrored, neededWidth, STANDARD_WIDTHS } from '../pipelines/wikipedia/thumbnails.ts';

const FIXTURES = new URL('./fixtures/wikipedia/', import.meta.url);
const TARGET = { size: 256, longer: false };

interface Expected {
  title: string;
  url: string;
  redirect: string | null;
  disambiguation: boolean;
  items: (string | Record<string, unknown>)[];
}

/** Texts as strings and images as their metadata: the shape the expected files are written in. */
function plain(items: ArticleItem[]): (string | Record<string, unknown>)[] {
  return items.map((item) => (item.kind === 'text' ? item.text : { ...item.image }));
}

test('hand-written Parsoid pages give the texts and images written out by hand', async () => {
  const names = (await readdir(FIXTURES)).filter((f) => f.endsWith('.html')).sort();
  assert.ok(names.length >= 8, `fixtures found: ${names.join(', ')}`);
  for (const name of names) {
    const html = await readFile(new URL(name, FIXTURES), 'utf8');
    const expected = JSON.parse(await readFile(new URL(name.replace(/\.html$/, '.expected.json'), FIXTURES), 'utf8')) as Expected;
    const article = extractArticle(html, { title: expected.title, url: expected.url, target: TARGET });
    assert.deepEqual(plain(article.items), expected.items, `${name}: items`);
    assert.equal(article.redirect ?? null, expected.redirect, `${name}: redirect`);
    assert.equal(article.disambiguation, expected.disambiguation, `${name}: disambiguation`);
  }
});

test('no citation marker, reference list, hatnote, navbox, maintenance box or icon survives in the fixtures', async () => {
  for (const name of (await readdir(FIXTURES)).filter((f) => f.endsWith('.html'))) {
    const expected = JSON.parse(await readFile(new URL(name.replace(/\.html$/, '.expected.json'), FIXTURES), 'utf8')) as Expected;
    const article = extractArticle(await readFile(new URL(name, FIXTURES), 'utf8'), { title: expected.title, url: expected.url, target: TARGET });
    const text = article.items.flatMap((i) => (i.kind === 'text' ? [i.text] : [])).join('\n');
    for (const unwanted of [
      '[1]',
      '[2]',
      'citation needed',
      'Smith 2001',
      'computing concept',
      'Spinning top',
      'additional citations',
      'stub',
      'Coordinates',
      '47°N',
      'Cayley',
      'Germany\n',
    ]) {
      assert.ok(!text.includes(unwanted), `${name}: "${unwanted}" in the text`);
    }
    for (const item of article.items) {
      if (item.kind === 'image') assert.ok(Math.max(item.image.rendered_width!, item.image.rendered_height!) > 60, `${name}: icon ${item.image.src}`);
    }
  }
});

test('a section is dropped whole under an appendix heading, and a heading with nothing after it is not written', () => {
  const html =
    '<section><p>Lead.</p></section><section><h2>Early life</h2><section><h3>Childhood</h3><p>Born in a town.</p></section></section>' +
    '<section><h2>Notes</h2><p>A note.</p><section><h3>Sub</h3><p>Still notes.</p></section></section><section><h2>Empty</h2></section>';
  const article = extractArticle(html, { title: 'Person', url: 'https://en.wikipedia.org/wiki/Person', target: TARGET });
  assert.deepEqual(plain(article.items), ['Person\n\nLead.\n\nEarly life\n\nChildhood\n\nBorn in a town.']);
});

test('whitespace: Unicode spaces are one space, <br> is a line break, entities are decoded, <pre> is kept as written', () => {
  const html = '<p>a\u00a0b\u2003 c\n\td&amp;e&#x41;&lt;<br/>  f </p><pre>  x\n    y  </pre>';
  const article = extractArticle(html, { title: '', url: 'https://en.wikipedia.org/wiki/W', target: TARGET });
  assert.deepEqual(plain(article.items), ['a b c d&eA<\nf\n\n  x\n    y']);
});

test('math alt text loses its \\displaystyle wrapper only', () => {
  assert.equal(mathText('{\\displaystyle |G|=[G:H]|H|.}'), '|G|=[G:H]|H|.');
  assert.equal(mathText('{\\textstyle {\\frac {1}{2}}}'), '{\\frac {1}{2}}');
  assert.equal(mathText('x^2'), 'x^2');
});

test('HTML nested 100,000 deep is walked without recursion, in linear time, and its text extracted', () => {
  const depth = 100_000;
  const html = `${'<div><span>'.repeat(depth)}deep text${'</span></div>'.repeat(depth)}<p>after</p>`;
  const article = extractArticle(html, { title: 'Deep', url: 'https://en.wikipedia.org/wiki/Deep', target: TARGET });
  assert.deepEqual(plain(article.items), ['Deep\n\ndeep text\n\nafter']);
  // Unclosed and mismatched: every element closed once, stray end tags ignored.
  let opens = 0;
  let closes = 0;
  walkHtml(`${'<div>'.repeat(depth)}x${'</span>'.repeat(depth)}`, { open: () => opens++, close: () => closes++, text: () => {} }, new Set());
  assert.equal(opens, depth);
  assert.equal(closes, depth);
});

test('the walker closes every element once, innermost first, for any input (fast-check)', () => {
  const tags = fc.constantFrom('div', 'p', 'span', 'img', 'br', 'table', 'li', 'x-y');
  const token = fc.oneof(
    tags.map((t) => `<${t}>`),
    tags.map((t) => `</${t}>`),
    tags.map((t) => `<${t}/>`),
    fc.string({ maxLength: 5 }),
  );
  fc.assert(
    fc.property(fc.array(token, { maxLength: 60 }), (tokens) => {
      const stack: string[] = [];
      walkHtml(tokens.join(''), { open: (name) => void stack.push(name), close: (name) => assert.equal(stack.pop(), name), text: () => {} }, new Set());
      assert.deepEqual(stack, []);
    }),
  );
});

test('renditions: the smallest standard width reaching --image-size, or the original when that is not smaller', () => {
  const thumb = '//upload.wikimedia.org/wikipedia/commons/thumb/7/71/Russian-Matroshka.jpg/200px-Russian-Matroshka.jpg';
  // 2560x1920 at 256 on the shorter side needs 342 px of width: 500, the next standard width.
  assert.deepEqual(fileUrls(thumb, 2560, 1920, TARGET), {
    rendition: 'https://upload.wikimedia.org/wikipedia/commons/thumb/7/71/Russian-Matroshka.jpg/500px-Russian-Matroshka.jpg',
    width: 500,
    original: 'https://upload.wikimedia.org/wikipedia/commons/7/71/Russian-Matroshka.jpg',
  });
  // The longer side to 256 (border): 256 wide, so 330.
  assert.equal(fileUrls(thumb, 2560, 1920, { size: 256, longer: true })!.width, 330);
  // A portrait 4000x6000 with the longer side to 256: 171 px wide, so 250.
  assert.equal(fileUrls(thumb, 4000, 6000, { size: 256, longer: true })!.width, 250);
  // 267x373 needs 256 wide; 330 is not below the original's 267: the original.
  assert.deepEqual(fileUrls('//upload.wikimedia.org/wikipedia/en/thumb/7/73/Smokeycover.jpg/170px-Smokeycover.jpg', 267, 373, TARGET), {
    rendition: 'https://upload.wikimedia.org/wikipedia/en/7/73/Smokeycover.jpg',
    width: 267,
    original: 'https://upload.wikimedia.org/wikipedia/en/7/73/Smokeycover.jpg',
  });
  // An SVG renders at any width, so 500 although its nominal size is 213x116 (needs 471).
  assert.equal(
    fileUrls('//upload.wikimedia.org/wikipedia/commons/thumb/6/63/Anhydride.svg/220px-Anhydride.svg.png', 213, 116, TARGET)!.rendition,
    'https://upload.wikimedia.org/wikipedia/commons/thumb/6/63/Anhydride.svg/500px-Anhydride.svg.png',
  );
  // A TIFF keeps its thumbnail name's prefix and suffix.
  assert.equal(
    fileUrls('//upload.wikimedia.org/wikipedia/commons/thumb/a/ab/Map.tif/lossy-page1-220px-Map.tif.jpg', 5000, 4000, TARGET)!.rendition,
    'https://upload.wikimedia.org/wikipedia/commons/thumb/a/ab/Map.tif/lossy-page1-330px-Map.tif.jpg',
  );
  // A panorama needing more than the largest standard width gets the largest.
  assert.equal(fileUrls(thumb, 40000, 1000, TARGET)!.width, 3840);
  // An original shown at its own size (no thumb folder): a thumbnail is made up when it is smaller.
  assert.equal(
    fileUrls('//upload.wikimedia.org/wikipedia/commons/4/4a/Big.png', 4000, 3000, TARGET)!.rendition,
    'https://upload.wikimedia.org/wikipedia/commons/thumb/4/4a/Big.png/500px-Big.png',
  );
  assert.equal(
    fileUrls('https://upload.wikimedia.org/wikipedia/commons/7/74/Red_Pencil_Icon.png', 16, 16, TARGET)!.rendition,
    'https://upload.wikimedia.org/wikipedia/commons/7/74/Red_Pencil_Icon.png',
  );
  assert.equal(fileUrls('https://wikimedia.org/api/rest_v1/media/math/render/svg/abc', 10, 10, TARGET), undefined);
  assert.equal(fileUrls('//evil.example/wikipedia/commons/thumb/a/ab/X.jpg/220px-X.jpg', 1000, 1000, TARGET), undefined);
});

test('a bitmap rendition reaches the target side whenever the original does, and is never wider than the original (fast-check)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 30_000 }),
      fc.integer({ min: 1, max: 30_000 }),
      fc.integer({ min: 16, max: 2048 }),
      fc.boolean(),
      (w, h, size, longer) => {
        const target = { size, longer };
        const urls = fileUrls('//upload.wikimedia.org/wikipedia/commons/thumb/1/1a/P.jpg/220px-P.jpg', w, h, target)!;
        const side = (width: number) => (longer ? Math.max(width, (width * h) / w) : Math.min(width, (width * h) / w));
        assert.ok(urls.width <= w);
        if (urls.rendition === urls.original) {
          assert.equal(urls.width, w);
        } else {
          assert.ok((STANDARD_WIDTHS as readonly number[]).includes(urls.width));
          if (neededWidth(w, h, target) <= STANDARD_WIDTHS[STANDARD_WIDTHS.length - 1]!)
            assert.ok(side(urls.width) >= size - 1e-9, `${w}x${h} at ${urls.width}`);
        }
      },
    ),
  );
});

test('--wikimedia-base moves only upload.wikimedia.org URLs, and is checked', () => {
  const url = 'https://upload.wikimedia.org/wikipedia/commons/1/1a/X.jpg';
  assert.equal(mirrored(url, 'https://upload.wikimedia.org'), url);
  assert.equal(mirrored(url, 'http://127.0.0.1:8000/mirror'), 'http://127.0.0.1:8000/mirror/wikipedia/commons/1/1a/X.jpg');
  assert.equal(mirrored('https://example.org/x.jpg', 'http://127.0.0.1:8000'), 'https://example.org/x.jpg');
  assert.equal(checkWikimediaBase('http://127.0.0.1:8000/mirror/'), 'http://127.0.0.1:8000/mirror');
  assert.equal(checkWikimediaBase('ftp://x'), undefined);
  assert.equal(checkWikimediaBase('https://x/?a=1'), undefined);
  assert.equal(checkWikimediaBase('not a url'), undefined);
});
