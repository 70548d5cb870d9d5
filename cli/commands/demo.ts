import { Command } from 'commander';
import { integerIn } from '../parse.ts';

export function demoCommand(): Command {
  return new Command('demo')
    .description('run the pipeline on a built-in offline sample (no internet needed): what `npm start` runs')
    .option('-o, --out <dir>', 'output folder: new, empty, or made by an earlier demo (only then emptied first)', 'out/demo')
    .option('--steps <n>', 'training steps of the demo run, one 512-token sequence each; the mixture is planned for as many', integerIn(1), 30)
    .action(async (options: { out: string; steps: number }) => {
      const { runDemo } = await import('../../demo/run-demo.ts');
      await runDemo({ out: options.out, steps: options.steps, log: (line) => process.stdout.write(`${line}\n`) });
    });
}
