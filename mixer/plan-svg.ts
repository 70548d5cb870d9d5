import type { RealisedReport } from './mixture-stream-types.ts';
import type { MixPlan } from './plan.ts';

const BAR_COLORS = { card: '#9aa5b1', planned: '#2f6fdf', realised: '#e07b24' } as const;

/**
 * `plan.svg`: per source, the card's share of tokens against the planned one (and the realised one once a stream has
 * run), as horizontal bars with their values. Hand-written SVG: no fonts or scripts to load.
 */
export function planSvg(plan: MixPlan, realised?: RealisedReport): string {
  const series: (keyof typeof BAR_COLORS)[] = realised ? ['card', 'planned', 'realised'] : ['card', 'planned'];
  const barHeight = 16;
  const groupHeight = series.length * barHeight + 18;
  const left = 110;
  const width = 640;
  const plotWidth = width - left - 90;
  const top = 56;
  const height = top + plan.sources.length * groupHeight + 20;
  const value = (name: string, s: (typeof series)[number]): number => {
    const planned = plan.sources.find((p) => p.name === name)!;
    if (s === 'card') return planned.card.share;
    if (s === 'planned') return planned.share;
    return realised!.sources.find((r) => r.name === name)?.share ?? 0;
  };
  const max = Math.max(...plan.sources.flatMap((p) => series.map((s) => value(p.name, s))), 1e-9);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${escapeXml(`${plan.profile.name}: share of tokens per source (mode ${plan.mode})`)}</text>`,
  ];
  series.forEach((s, i) => {
    out.push(`<rect x="${10 + i * 120}" y="32" width="12" height="12" fill="${BAR_COLORS[s]}"/>`, `<text x="${26 + i * 120}" y="43">${s}</text>`);
  });
  plan.sources.forEach((p, g) => {
    const y0 = top + g * groupHeight;
    out.push(`<text x="10" y="${y0 + (series.length * barHeight) / 2 + 4}">${escapeXml(p.name)}</text>`);
    series.forEach((s, i) => {
      const v = value(p.name, s);
      const w = (v / max) * plotWidth;
      const y = y0 + i * barHeight;
      out.push(
        `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barHeight - 3}" fill="${BAR_COLORS[s]}"/>`,
        `<text x="${(left + w + 4).toFixed(1)}" y="${y + barHeight - 5}">${(v * 100).toFixed(2)}%</text>`,
      );
    });
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
