import { Command, CommanderError } from 'commander';
import { asM4Error } from '../core/errors.ts';
import { ExitCode } from '../core/exit-codes.ts';
import { buildCommand } from './commands/build.ts';
import { extractCommand } from './commands/extract.ts';
import { inspectCommand } from './commands/inspect.ts';
import { demoCommand } from './commands/demo.ts';
import { exportCommand } from './commands/export.ts';
import { mixCommand } from './commands/mix.ts';
import { trainCommand } from './commands/train.ts';

export function buildProgram(): Command {
  const program = new Command('m4data')
    .description(
      'Builds the training data of a Flamingo-style vision-language model: WebDataset shards from OBELICS, PMD, LAION\n' +
        'and Wikipedia (build; extract for the Wikipedia dump), mixed by the model card (mix), packed into training sequences (train).\n' +
        'Every location may be a local path, file://, s3://bucket/prefix, or (read-only) http(s)://.',
    )
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  program.addCommand(buildCommand());
  program.addCommand(extractCommand());
  program.addCommand(mixCommand());
  program.addCommand(trainCommand());
  program.addCommand(exportCommand());
  program.addCommand(inspectCommand());
  program.addCommand(demoCommand());
  program.configureOutput({ outputError: usageLine });
  for (const command of program.commands) command.exitOverride().showHelpAfterError('(run with --help for usage)').configureOutput({ outputError: usageLine });
  return program;
}

/** Runs the CLI and returns the exit code; never throws. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end through here too, with exit code 0.
      return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    }
    const error = asM4Error(err);
    process.stderr.write(`m4data: ${error.message} [${error.code}]\n`);
    if (process.env.M4DATA_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return error.code === 'E_USAGE' ? ExitCode.USAGE : ExitCode.FAILURE;
  }
}

/** Commander's own usage errors (`error: unknown option ...`) in m4data's one error format. */
function usageLine(text: string, write: (line: string) => void): void {
  write(`m4data: ${text.trim().replace(/^error: /, '')} [E_USAGE]\n`);
}
