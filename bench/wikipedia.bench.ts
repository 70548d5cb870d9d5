// Wikipedia extraction speed, in articles per CPU-second, against the chosen parser's plain parse of the same HTML (the
// floor: htmlparser2's Parser with no-op handlers), its tokenizer alone, and parse5 (the other candidate, which builds a
// DOM). Pages: the 12 real ones of ../shared when present, and generated Parsoid pages of 20 to 300 KB. Then the dump
// reader (gunzip -> tar -> lines, what rows of other workers' shards cost) against gunzip alone on the same tar.gz.
import { access, mkdir, rm } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createGunzip } from 'node:zlib';
import { Parser, Tokenizer, type TokenizerCallbacks } from 'htmlparser2';
import { parse } from 'parse5';
import { readDump } from '../pipelines/engine/dump/read-dump.ts';
import { dumpDocument } from '../pipelines/wikipedia/dump-document.ts';
import { extractArticle } from '../pipelines/wikipedia/extract-article.ts';
import { seededRandom } from '../sandbox/images.ts';
import { articleRecord, dumpLine, writeDumpTarGz } from '../sandbox/wikipedia-dump.ts';
import { generateArticleHtml } from '../sandbox/wikipedia-pages.ts';
import { isQuick, MB, ratio, report, rssSampler } from './harness.ts';

const root = join(process.cwd(), '.bench-tmp', 'wikipedia');
const REAL = fileURLToPath(new URL('../../shared/realdata/wikipedia-dump/enwiki-sample-NS0-ENTERPRISE-HTML.json.tar.gz', import.meta.url));
const TARGET = { size: 256, longer: false };
const ENGLISH_ARTICLES = 6_600_000;

/** CPU seconds (user + system) of one call. */
function cpu(fn: () => void): number {
  const start = process.cpuUsage();
  fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}

/** Best CPU time of each contender over `rounds` alternating rounds (other load on 2 shared cores only slows a round). */
function bestCpu(rounds: number, contenders: Record<string, () => void>): Record<string, number> {
  const best: Record<string, number> = {};
  for (let round = 0; round < rounds; round++) {
    for (const [name, fn] of Object.entries(contenders)) best[name] = Math.min(best[name] ?? Infinity, cpu(fn));
  }
  return best;
}

async function linesOf(file: string): Promise<string[]> {
  const lines: string[] = [];
  for await (const batch of readDump([file], { maxLineBytes: 64 << 20 })) {
    for (const row of batch.rows) lines.push((row.dumpLine as { bytes: Buffer }).bytes.toString('utf8'));
  }
  return lines;
}

await rm(root, { recursive: true, force: true });
await mkdir(root, { recursive: true });
const quick = isQuick();
const random = seededRandom(15);
const generated = Array.from({ length: quick ? 12 : 60 }, (_, i) => {
  // Log-uniform sizes between 20 and 300 KB of HTML, as real articles spread.
  const bytes = Math.round(20_000 * Math.exp(random() * Math.log(15)));
  const page = generateArticleHtml(i + 1, bytes);
  return dumpLine(articleRecord({ name: page.title, identifier: i + 1, html: page.html })).slice(0, -1);
});
const real = (await access(REAL).then(
  () => true,
  () => false,
))
  ? await linesOf(REAL)
  : [];
const sets: [string, string[]][] = [['generated', generated]];
if (real.length > 0) sets.unshift(['real', real]);
else console.log(`(${REAL} absent: generated pages only)`);

const rss = rssSampler();
const noop = () => {};
const callbacks: TokenizerCallbacks = {
  onattribdata: noop,
  onattribentity: noop,
  onattribend: noop,
  onattribname: noop,
  oncdata: noop,
  onclosetag: noop,
  oncomment: noop,
  ondeclaration: noop,
  onend: noop,
  onopentagend: noop,
  onopentagname: noop,
  onprocessinginstruction: noop,
  onselfclosingtag: noop,
  ontext: noop,
  ontextentity: noop,
};
for (const [name, lines] of sets) {
  const records = lines.map((l) => JSON.parse(l) as { name: string; url: string; article_body: { html: string } });
  const htmls = records.map((r) => r.article_body.html);
  const buffers = lines.map((l) => Buffer.from(l));
  const htmlBytes = htmls.reduce((n, h) => n + Buffer.byteLength(h), 0);
  const times = bestCpu(quick ? 3 : 7, {
    line: () => {
      for (const bytes of buffers) dumpDocument({ bytes, length: bytes.length, maxLineBytes: 64 << 20 }, TARGET);
    },
    extract: () => {
      for (const r of records) extractArticle(r.article_body.html, { title: r.name, url: r.url, target: TARGET });
    },
    parser: () => {
      for (const h of htmls) new Parser({}, { decodeEntities: true }).end(h);
    },
    tokenizer: () => {
      for (const h of htmls) {
        const t = new Tokenizer({ decodeEntities: true }, callbacks);
        t.write(h);
        t.end();
      }
    },
    parse5: () => {
      for (const h of htmls) parse(h);
    },
    json: () => {
      for (const l of lines) JSON.parse(l);
    },
  });
  const perSecond = (seconds: number) => Math.round(lines.length / seconds);
  const mbPerSecond = (seconds: number) => Math.round((htmlBytes / MB / seconds) * 10) / 10;
  console.log(`${name} pages: ${lines.length}, ${Math.round(htmlBytes / lines.length / 1000)} KB of HTML on average`);
  for (const [contender, seconds] of Object.entries(times)) {
    console.log(
      `  ${contender.padEnd(10)} ${String(perSecond(seconds)).padStart(6)} articles/CPU-s  ${String(mbPerSecond(seconds)).padStart(6)} MB of HTML/CPU-s`,
    );
  }
  report(`wikipedia-extract-${name}`, {
    pages: lines.length,
    avgHtmlKB: Math.round(htmlBytes / lines.length / 1000),
    articlesPerCpuSecond: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, perSecond(v)])),
    // The aims: extraction (from the dump line) at least 200 articles/CPU-s and at least 0.5 of the plain parse.
    lineVsParser: ratio(times.parser!, times.line!),
    extractVsParser: ratio(times.parser!, times.extract!),
    extractVsParse5: ratio(times.parse5!, times.extract!),
    englishDumpCoreHours: Math.round((ENGLISH_ARTICLES / perSecond(times.line!) / 3600) * 10) / 10,
  });
}

// The dump reader: every worker reads the whole dump, so a row of another worker's shard costs gunzip, tar and a line split.
const copies = quick ? 2 : 8;
const archive = await writeDumpTarGz(
  root,
  'dump.json.tar.gz',
  Array.from({ length: copies }, (_, i) => [`enwiki_namespace_0_${i}.ndjson`, generated.map((l) => `${l}\n`).join('')]),
);
const gunzipOnly = async () => {
  let bytes = 0;
  for await (const chunk of createReadStream(archive).pipe(createGunzip())) bytes += (chunk as Buffer).length;
  return bytes;
};
const readAll = async () => {
  let rows = 0;
  for await (const batch of readDump([archive], { maxLineBytes: 64 << 20 })) rows += batch.rows.length;
  return rows;
};
const best: Record<string, number> = {};
let tarBytes = 0;
let rows = 0;
for (let round = 0; round < 3; round++) {
  let start = process.cpuUsage();
  tarBytes = await gunzipOnly();
  let used = process.cpuUsage(start);
  best.gunzip = Math.min(best.gunzip ?? Infinity, (used.user + used.system) / 1e6);
  start = process.cpuUsage();
  rows = await readAll();
  used = process.cpuUsage(start);
  best.reader = Math.min(best.reader ?? Infinity, (used.user + used.system) / 1e6);
}
console.log(
  `dump reader: ${rows} rows, ${Math.round(tarBytes / MB)} MB of tar; gunzip alone ${Math.round(tarBytes / MB / best.gunzip!)} MB/CPU-s, reader ` +
    `${Math.round(tarBytes / MB / best.reader!)} MB/CPU-s`,
);
report('wikipedia-dump-reader', {
  rows,
  tarMB: Math.round(tarBytes / MB),
  gunzipMBPerCpuSecond: Math.round(tarBytes / MB / best.gunzip!),
  readerMBPerCpuSecond: Math.round(tarBytes / MB / best.reader!),
  readerVsGunzip: ratio(best.gunzip!, best.reader!),
  peakRssMiB: Math.round(rss.stop() / 2 ** 20),
});
await rm(root, { recursive: true, force: true });
