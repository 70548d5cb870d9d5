import { grid, percent } from '../core/format.ts';
import type { MixQuality } from './mix-quality.ts';
import type { RealisedReport } from './mixture-stream-types.ts';
import type { MixPlan } from './plan.ts';

/** 114.9B, 3.19B, 20.0k, 512: token and sample counts as the cards write them. */
export function formatQuantity(n: number): string {
  const abs = Math.abs(n);
  if (abs >= 1e12) return `${(n / 1e12).toPrecision(4)}T`;
  if (abs >= 1e9) return `${(n / 1e9).toPrecision(4)}B`;
  if (abs >= 1e6) return `${(n / 1e6).toPrecision(4)}M`;
  if (abs >= 1e4) return `${(n / 1e3).toPrecision(4)}k`;
  return String(Math.round(n));
}

const epochs = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));

/** The plan per source: what is available, what the card says, what is planned, and what bound it. */
export function formatPlan(plan: MixPlan): string {
  const rows = [['source', 'tokens', 'samples', 'card ep', 'card share', 'epochs', 'share', 'plan tokens', 'plan samples', 'bound by']];
  for (const s of plan.sources) {
    rows.push([
      s.name,
      `${formatQuantity(s.available.tokens)}${s.assumed ? ' (assumed)' : ''}`,
      s.assumed ? '-' : formatQuantity(s.available.samples),
      String(s.card.epochs),
      percent(s.card.share),
      epochs(s.epochs),
      percent(s.share),
      formatQuantity(s.tokens),
      s.assumed ? '-' : formatQuantity(s.samples),
      s.boundBy,
    ]);
  }
  const lines = [
    `profile ${plan.profile.name}, mode ${plan.mode}, seed ${plan.seed}`,
    grid(rows),
    `budget ${formatQuantity(plan.budget.tokens)} tokens = ${plan.budget.steps.toPrecision(4)} steps of ${formatQuantity(plan.budget.tokensPerStep)} tokens ` +
      `(${plan.budget.boundBy})`,
  ];
  for (const s of plan.sources) {
    const drift = s.share - s.card.share;
    if (Math.abs(drift) >= 0.0005)
      lines.push(
        `  ${s.name}: share ${percent(s.share)} against the card's ${percent(s.card.share)} (${drift > 0 ? '+' : ''}${(drift * 100).toFixed(2)} points)`,
      );
  }
  for (const warning of plan.warnings ?? []) lines.push(`WARNING: ${warning}`);
  if (plan.dropped.length > 0) {
    lines.push(`WARNING: left out ${plan.dropped.join(', ')} (--drop-missing); the other shares were renormalised over the rest`);
  }
  return `${lines.join('\n')}\n`;
}

/** What a stream delivered per source against the plan. */
export function formatRealised(report: RealisedReport): string {
  const rows = [['source', 'tokens', 'planned', 'samples', 'images', 'epochs', 'share', 'planned share', 'lost']];
  for (const s of report.sources) {
    rows.push([
      s.name,
      formatQuantity(s.tokens),
      formatQuantity(s.plannedTokens),
      formatQuantity(s.samples),
      formatQuantity(s.images),
      epochs(s.epochs),
      percent(s.share),
      percent(s.plannedShare),
      s.lostSamples > 0 ? `${s.lostSamples} samples` : '0',
    ]);
  }
  const lines = [grid(rows), `${formatQuantity(report.samples)} samples, ${formatQuantity(report.tokens)} tokens`];
  if (report.remainder > 0) lines.push(`${report.remainder} samples of a last incomplete round of ranks were left out`);
  for (const bad of report.badShards) lines.push(`  bad shard: ${bad}`);
  lines.push(`how well mixed (${report.quality.windows} windows of ${report.quality.window} tokens):`, formatQuality(report.quality).trimEnd());
  return `${lines.join('\n')}\n`;
}

/** The quality table, one row per source. */
export function formatQuality(quality: MixQuality): string {
  const rows = [['source', 'windows without it', 'expected', 'longest absence', 'longest run', 'same shard as previous', 'shards per 1,000']];
  for (const s of quality.sources) {
    rows.push([
      s.name,
      quality.windows > 0 ? percent(s.windowsWithout, 1) : '-',
      quality.windows > 0 ? percent(s.windowsWithoutExpected, 1) : '-',
      `${formatQuantity(s.longestAbsence)} tokens`,
      String(s.longestRun),
      percent(s.adjacentSameShard, 1),
      s.distinctShardsPer1000.toFixed(0),
    ]);
  }
  return `${grid(rows)}\n`;
}
