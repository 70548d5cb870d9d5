/**
 * Wikimedia Enterprise HTML dumps made here, in the layout of the real ones (see the project's shared
 * realdata/wikipedia-dump/README.md): one JSON object per article and line, encoded as Go's encoding/json writes it,
 * NDJSON members in a tar.gz written by GNU tar.
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

export interface ArticleInput {
  name: string;
  identifier: number;
  html: string;
  revision?: number;
  dateModified?: string;
  wikidata?: string;
  /** Default 0, the article namespace. */
  namespace?: number;
}

/** The record of one article, keys in the dump's order. */
export function articleRecord(article: ArticleInput): Record<string, unknown> {
  const record: Record<string, unknown> = {
    name: article.name,
    identifier: article.identifier,
    date_modified: article.dateModified ?? '2023-02-01T00:00:00Z',
    version: { identifier: article.revision ?? article.identifier * 10 },
    url: `https://en.wikipedia.org/wiki/${encodeURIComponent(article.name.replace(/ /g, '_')).replace(/%2C/g, ',')}`,
    namespace: { name: 'Article', identifier: article.namespace ?? 0 },
    in_language: { name: 'English', identifier: 'en' },
  };
  if (article.wikidata) record.main_entity = { identifier: article.wikidata, url: `http://www.wikidata.org/entity/${article.wikidata}` };
  record.is_part_of = { name: 'Wikipedia', identifier: 'enwiki' };
  record.article_body = { html: article.html, wikitext: '' };
  record.license = [
    { name: 'Creative Commons Attribution Share Alike 3.0 Unported', identifier: 'CC-BY-SA-3.0', url: 'https://creativecommons.org/licenses/by-sa/3.0/' },
  ];
  return record;
}

/** One NDJSON line as Go's encoding/json writes it: compact, `<`, `>` and `&` escaped as \u003c, \u003e, \u0026. */
export function dumpLine(record: unknown): string {
  return `${JSON.stringify(record).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`;
}

/** A Parsoid page around body content, with the head Parsoid writes (title, base, version). */
export function parsoidPage(title: string, body: string): string {
  const href = encodeURIComponent(title.replace(/ /g, '_'));
  return (
    `<!DOCTYPE html>\n<html prefix="dc: http://purl.org/dc/terms/ mw: http://mediawiki.org/rdf/"><head prefix="mwr: ` +
    `https://en.wikipedia.org/wiki/Special:Redirect/">` +
    `<meta charset="utf-8"/><meta property="mw:pageNamespace" content="0"/><meta property="mw:htmlVersion" content="2.7.0"/>` +
    `<link rel="dc:isVersionOf" href="//en.wikipedia.org/wiki/${href}"/><base href="//en.wikipedia.org/wiki/"/><title>${title}</title>` +
    `<link rel="stylesheet" href="/w/load.php?lang=en&amp;modules=site.styles&amp;only=styles&amp;skin=vector"/></head>` +
    `<body id="mwAA" lang="en" class="mw-content-ltr sitedir-ltr ltr mw-body-content parsoid-body mediawiki mw-parser-output" dir="ltr">${body}</body></html>`
  );
}

/**
 * Writes `members` (name -> NDJSON text) into `dir` and packs them, in the order given, into `dir/<name>` with GNU tar
 * and gzip, as the dumps are published. Returns the archive's path.
 */
export async function writeDumpTarGz(dir: string, name: string, members: [string, string][]): Promise<string> {
  const staging = join(dir, `${name}.members`);
  await mkdir(staging, { recursive: true });
  for (const [member, text] of members) await writeFile(join(staging, member), text);
  const archive = join(dir, name);
  await promisify(execFile)('tar', ['-czf', archive, '-C', staging, '--owner=0', '--group=0', ...members.map(([member]) => member)]);
  return archive;
}
