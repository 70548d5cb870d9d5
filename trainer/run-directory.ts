import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { M4Error } from '../core/errors.ts';
import { checkLocalOutput } from '../shards/storage/local-output.ts';
import { discardIncompleteFile } from '../shards/storage/local.ts';
import { CHECKPOINT_FILE, readCheckpointInfo, type CheckpointInfo } from './checkpoint.ts';
import { LOSS_SVG_FILE, METRICS_FILE } from './metrics.ts';

/**
 * Opens a run directory: checked as every output location is (a folder or nothing yet, on a writable real file system),
 * made, and cleared of what a killed run left half-written. Returns its checkpoint when resuming. A directory holding a
 * checkpoint is only ever resumed, never trained over; resuming one that holds none is refused rather than silently
 * starting from scratch.
 */
export async function openRunDirectory(runDir: string, resume: boolean): Promise<CheckpointInfo | null> {
  await checkLocalOutput(runDir, 'run directory');
  await mkdir(runDir, { recursive: true });
  for (const file of [CHECKPOINT_FILE, METRICS_FILE, LOSS_SVG_FILE]) await discardIncompleteFile(join(runDir, file));
  const existing = await readCheckpointInfo(runDir);
  if (existing && !resume) {
    throw new M4Error('E_USAGE', 'trainer', `${runDir} already holds a checkpoint at step ${existing.step}: resume it, or choose another run directory`, {
      runDir,
    });
  }
  if (!existing && resume) {
    throw new M4Error(
      'E_USAGE',
      'trainer',
      `nothing to resume: ${runDir} holds no checkpoint (no step was completed and saved there); start the run without resuming`,
      { runDir },
    );
  }
  return existing;
}
