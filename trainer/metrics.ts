import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomically } from '../shards/storage/local.ts';

export const METRICS_FILE = 'metrics.jsonl';
export const LOSS_SVG_FILE = 'loss.svg';

/** One line of RUN/metrics.jsonl. Step k is the k-th optimizer update; its losses are measured before that update. */
export interface StepMetrics {
  step: number;
  /** Next-token cross-entropy (nats) over the step's label tokens. */
  loss: number;
  /** Mean logsumexp(logits)^2 (before the z-loss weight). */
  zLoss: number;
  /** loss + zLossWeight * zLoss: what the optimizer minimised. */
  objective: number;
  learningRate: number;
  gradNorm: number;
  /** Non-padding tokens and encoded images of the step, per second of the step's wall time (waits included). */
  tokensPerSecond: number;
  imagesPerSecond: number;
  /** Seconds spent waiting for the step's batches. */
  batchWaitSeconds: number;
  stepSeconds: number;
  tokens: number;
  images: number;
}

export function formatStep(m: StepMetrics, steps: number): string {
  return [
    `step ${m.step}/${steps}`,
    `loss ${m.loss.toFixed(4)}`,
    `z-loss ${m.zLoss.toFixed(2)}`,
    `lr ${m.learningRate.toExponential(2)}`,
    `grad-norm ${m.gradNorm.toFixed(3)}`,
    `${m.tokensPerSecond.toFixed(0)} tokens/s`,
    `${m.imagesPerSecond.toFixed(1)} images/s`,
    `batch wait ${m.batchWaitSeconds.toFixed(3)}s`,
  ].join('  ');
}

export async function appendMetrics(runDir: string, m: StepMetrics): Promise<void> {
  await appendFile(join(runDir, METRICS_FILE), `${JSON.stringify(m)}\n`);
}

export async function readMetrics(runDir: string): Promise<StepMetrics[]> {
  let text: string;
  try {
    text = await readFile(join(runDir, METRICS_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  // A run killed while appending leaves its last line without an end: that step is redone, so the part is dropped.
  const complete = text.endsWith('\n') ? text : text.slice(0, text.lastIndexOf('\n') + 1);
  return complete
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as StepMetrics);
}

/** Keeps the lines of steps 1..lastStep: steps logged after the checkpoint a run resumes from are redone. */
export async function truncateMetrics(runDir: string, lastStep: number): Promise<void> {
  const kept = (await readMetrics(runDir)).filter((m) => m.step <= lastStep);
  await writeFileAtomically(join(runDir, METRICS_FILE), Buffer.from(kept.map((m) => `${JSON.stringify(m)}\n`).join('')));
}

/** A hand-drawn SVG line chart of loss against step. */
export function lossSvg(points: readonly { step: number; loss: number }[], title = 'training loss'): string {
  const width = 640;
  const height = 360;
  const pad = { left: 60, right: 20, top: 30, bottom: 40 };
  const finite = points.filter((p) => Number.isFinite(p.loss));
  const steps = finite.map((p) => p.step);
  const losses = finite.map((p) => p.loss);
  // Reductions, not Math.min(...xs): a long run's steps would overflow the call stack as arguments.
  const minStep = steps.reduce((a, b) => Math.min(a, b), 0);
  const maxStep = steps.reduce((a, b) => Math.max(a, b), minStep + 1);
  const minLoss = losses.reduce((a, b) => Math.min(a, b), Infinity);
  const maxLoss = losses.reduce((a, b) => Math.max(a, b), -Infinity);
  const low = Number.isFinite(minLoss) ? minLoss : 0;
  const high = Number.isFinite(maxLoss) && maxLoss > low ? maxLoss : low + 1;
  const x = (step: number) => pad.left + ((step - minStep) / (maxStep - minStep)) * (width - pad.left - pad.right);
  const y = (loss: number) => pad.top + ((high - loss) / (high - low)) * (height - pad.top - pad.bottom);
  const path = finite.map((p) => `${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ');
  const bottom = height - pad.bottom;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="18" text-anchor="middle">${title}</text>`,
    `<line x1="${pad.left}" y1="${pad.top}" x2="${pad.left}" y2="${bottom}" stroke="black"/>`,
    `<line x1="${pad.left}" y1="${bottom}" x2="${width - pad.right}" y2="${bottom}" stroke="black"/>`,
    `<text x="${pad.left - 6}" y="${pad.top + 4}" text-anchor="end">${high.toFixed(3)}</text>`,
    `<text x="${pad.left - 6}" y="${bottom}" text-anchor="end">${low.toFixed(3)}</text>`,
    `<text x="${pad.left}" y="${bottom + 16}" text-anchor="middle">${minStep}</text>`,
    `<text x="${width - pad.right}" y="${bottom + 16}" text-anchor="middle">${maxStep}</text>`,
    `<text x="${width / 2}" y="${height - 8}" text-anchor="middle">step</text>`,
    `<text x="14" y="${height / 2}" text-anchor="middle" transform="rotate(-90 14 ${height / 2})">loss (nats)</text>`,
    finite.length > 0 ? `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${path}"/>` : '',
    '</svg>',
    '',
  ].join('\n');
}

export async function writeLossSvg(runDir: string): Promise<void> {
  await writeFileAtomically(join(runDir, LOSS_SVG_FILE), Buffer.from(lossSvg(await readMetrics(runDir))));
}
