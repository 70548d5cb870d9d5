import { Command } from 'commander';

export function demoCommand(): Command {
  return new Command('demo')
    .description('run the pipeline on a built-in offline sample (no internet needed): what `npm start` runs')
    .option('-o, --out <dir>', 'output folder: new, empty, or made by an earlier demo (only then emptied first)', 'out/demo')
    .action(async (options: { out: string }) => {
      const { runDemo } = await import('../../demo/run-demo.ts');
      await runDemo({ out: options.out, log: (line) => process.stdout.write(`${line}\n`) });
    });
}
