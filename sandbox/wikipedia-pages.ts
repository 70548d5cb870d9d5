/**
 * Seeded Parsoid HTML of realistic size and shape for benchmarks: what makes real article HTML heavy (data-mw JSON on
 * every template and reference, ids on every element, srcsets, reference lists and navboxes) around readable text,
 * thumbnails, an infobox and sometimes a gallery. Real pages run from a few KB to a few hundred KB; `bytes` picks it.
 */
import { parsoidPage } from './wikipedia-dump.ts';
import { TextGenerator } from './texts.ts';

export function generateArticleHtml(seed: number, bytes: number): { title: string; html: string } {
  const text = new TextGenerator(seed);
  const city = text.city();
  const title = `${city} ${text.heading()} ${seed}`;
  let id = 0;
  const mw = () => `mw${(id++).toString(36)}`;
  let refs = 0;
  const parts: string[] = [];
  let size = 0;
  const add = (...more: string[]) => {
    for (const part of more) size += part.length;
    parts.push(...more);
  };
  const ref = () => {
    refs++;
    return (
      `<sup about="#mwt${refs}" class="mw-ref reference" id="cite_ref-${refs}" rel="dc:references" typeof="mw:Extension/ref" ` +
      `data-mw='{"name":"ref","attrs":{"name":"r${refs}"},"body":{"id":"mw-reference-text-cite_note-${refs}"}}'><a ` +
      `href="./${encodeURIComponent(title)}#cite_note-${refs}" style="counter-reset: mw-Ref ${refs};" id="${mw()}"><span class="mw-reflink-text" ` +
      `id="${mw()}">[${refs}]</span></a></sup>`
    );
  };
  const link = (words: string) => `<a rel="mw:WikiLink" href="./${words.replace(/ /g, '_')}" title="${words}" id="${mw()}">${words}</a>`;
  const paragraph = () => {
    const sentences = text.paragraph(city).split(/(?<=\.) /);
    return `<p id="${mw()}">${sentences.map((s, i) => (i % 2 === 0 ? s.replace(/^(\S+ \S+)/, (m) => link(m)) : `${s}${ref()}`)).join(' ')}</p>\n`;
  };
  const file = (n: number, width: number, height: number) => {
    const name = `${city.replace(/ /g, '_')}_${seed}_${n}.jpg`;
    const thumb = (w: number) => `//upload.wikimedia.org/wikipedia/commons/thumb/${n % 10}/${n % 10}${seed % 10}/${name}/${w}px-${name}`;
    const shown = Math.round((220 * height) / width);
    return (
      `<a href="./File:${name}" class="mw-file-description" id="${mw()}"><img resource="./File:${name}" src="${thumb(220)}" decoding="async" ` +
      `data-file-width="${width}" data-file-height="${height}" data-file-type="bitmap" height="${shown}" width="220" srcset="${thumb(330)} 1.5x, ` +
      `${thumb(440)} 2x" id="${mw()}"/></a>`
    );
  };
  const template = (name: string, body: string) =>
    `<span about="#mwt${id}" typeof="mw:Transclusion" ` +
    `data-mw='{"parts":[{"template":{"target":{"wt":"${name}","href":"./Template:${name.replace(/ /g, '_')}"},"params":{"1":{"wt":"${body}"}},"i":0}}]}' ` +
    `id="${mw()}">${body}</span>`;

  add(
    `<section data-mw-section-id="0" id="${mw()}"><div class="shortdescription nomobile noexcerpt noprint searchaux" style="display:none" ` +
      `typeof="mw:Transclusion" data-mw='{"parts":[]}' id="${mw()}">${text.caption()}</div>\n`,
    `<div role="note" class="hatnote navigation-not-searchable" id="${mw()}">For other uses, see ${link(`${city} (disambiguation)`)}.</div>\n`,
    `<table class="infobox vcard" typeof="mw:Transclusion" data-mw='{"parts":[{"template":{"target":{"wt":"Infobox ` +
      `settlement","href":"./Template:Infobox_settlement"},"params":{"name":{"wt":"${city}"},"population":{"wt":"${text.between(1000, 90000)}"}},"i":0}}]}' ` +
      `id="${mw()}"><caption class="infobox-title">${city}</caption><tbody><tr><td colspan="2" class="infobox-image"><span ` +
      `typeof="mw:File">${file(0, 4000, 3000)}</span><div class="infobox-caption">${text.caption()}</div></td></tr>`,
    ...Array.from(
      { length: 8 },
      () => `<tr><th scope="row" class="infobox-label">${text.heading()}</th><td class="infobox-data">${template('nowrap', text.caption())}</td></tr>`,
    ),
    `</tbody></table>\n`,
    paragraph(),
    paragraph(),
    `</section>`,
  );
  let section = 1;
  let images = 1;
  const tail = Math.round(bytes * 0.3); // references, navboxes: about a third of a real page's bytes
  while (size < bytes - tail) {
    add(`<section data-mw-section-id="${section++}" id="${mw()}"><h2 id="${mw()}">${text.heading()}</h2>\n`);
    if (section % 2 === 0)
      add(
        `<figure class="mw-default-size" typeof="mw:File/Thumb" ` +
          `id="${mw()}">${file(images++, 1600 + text.between(0, 2400), 1200 + text.between(0, 1800))}<figcaption ` +
          `id="${mw()}">${text.caption()}</figcaption></figure>\n`,
      );
    for (let p = text.between(2, 5); p > 0; p--) add(paragraph());
    if (section % 5 === 0) add(`<ul id="${mw()}">${Array.from({ length: 5 }, () => `<li id="${mw()}">${text.caption()}</li>`).join('')}</ul>\n`);
    if (section % 7 === 0) {
      add(`<ul class="gallery mw-gallery-traditional" typeof="mw:Extension/gallery" data-mw='{"name":"gallery"}' id="${mw()}">`);
      for (let g = 0; g < 4; g++)
        add(
          `<li class="gallerybox"><div class="thumb"><span typeof="mw:File">${file(images++, 800, 600)}</span></div><div ` +
            `class="gallerytext">${text.caption()}</div></li>`,
        );
      add(`</ul>\n`);
    }
    if (section % 6 === 0)
      add(
        `<table class="wikitable" ` +
          `id="${mw()}"><tbody>${Array.from({ length: 6 }, () => `<tr><td>${text.between(1700, 2020)}</td><td>${text.caption()}</td></tr>`).join('')}</tbody></table>\n`,
      );
    add(`</section>`);
  }
  add(
    `<section data-mw-section-id="${section++}"><h2 id="References">References</h2><div class="mw-references-wrap mw-references-columns" ` +
      `typeof="mw:Extension/references" data-mw='{"name":"references"}'><ol class="mw-references references">`,
  );
  for (let r = 1; r <= refs; r++) {
    add(
      `<li about="#cite_note-${r}" id="cite_note-${r}"><span class="mw-cite-backlink" id="${mw()}"><a href="./${encodeURIComponent(title)}#cite_ref-${r}" ` +
        `rel="mw:referencedBy" id="${mw()}"><span class="mw-linkback-text" id="${mw()}">↑ </span></a></span> <span id="mw-reference-text-cite_note-${r}" ` +
        `class="mw-reference-text"><cite class="citation web cs1" typeof="mw:Transclusion" data-mw='{"parts":[{"template":{"target":{"wt":"cite ` +
        `web","href":"./Template:Cite_web"},"params":{"title":{"wt":"${text.caption()}"},"url":{"wt":"https://example.org/${r}"},"access-date":{"wt":"2022-12-01"}},"i":0}}]}' id="${mw()}"><a rel="mw:ExtLink" href="https://example.org/${r}" class="external ` +
        `text">${text.caption()}</a>. Retrieved 1 December 2022.</cite></span></li>`,
    );
  }
  add(`</ol></div></section>`);
  while (size < bytes) {
    add(
      `<div role="navigation" class="navbox" id="${mw()}"><table class="nowraplinks hlist navbox-inner"><tbody><tr><th ` +
        `class="navbox-title">${text.heading()}</th></tr><tr><td ` +
        `class="navbox-list"><ul>${Array.from({ length: 30 }, () => `<li>${link(text.caption())}</li>`).join('')}</ul></td></tr></tbody></table></div>`,
    );
  }
  return { title, html: parsoidPage(title, parts.join('')) };
}
