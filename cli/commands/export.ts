import { Command } from 'commander';
import { formatBytes } from '../../core/format.ts';

/** `m4data export`: a training run's model as a Hugging Face IDEFICS checkpoint. */
export function exportCommand(): Command {
  return new Command('export')
    .description("write a training run's model as a Hugging Face IdeficsForVisionText2Text checkpoint (config.json, model.safetensors)")
    .requiredOption('--run-dir <RUN>', 'the run directory of m4data train (its checkpoint.safetensors)')
    .requiredOption('--output <DIR>', 'an empty or new folder for the checkpoint (nothing is overwritten)')
    .addHelpText(
      'after',
      "\nThe trained weights come from the run's checkpoint, the frozen ones from the run's --init-from checkpoints\n" +
        "(or the same seeded values). The files load with transformers' IdeficsForVisionText2Text.from_pretrained(DIR);\n" +
        'above 5 GB the weights are sharded with model.safetensors.index.json.\n' +
        'Example:\n  m4data export --run-dir out/run --output out/run-hf',
    )
    .action(async (options: { runDir: string; output: string }) => {
      // Loaded when the command runs (TensorFlow.js). Nothing is computed: the CPU backend holds the weights on their way to disk.
      const { selectBackend } = await import('../../trainer/backend.ts');
      const { exportRun } = await import('../../trainer/hf/export.ts');
      await selectBackend('cpu');
      const result = await exportRun(options.runDir, options.output);
      process.stdout.write(
        `exported step ${result.step} of ${options.runDir}: ${result.tensors} tensors, ${formatBytes(result.bytes)} in ` +
          `${result.files.map((f) => `${result.dir}/${f}`).join(', ')}\n`,
      );
    });
}
