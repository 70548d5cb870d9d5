import { Command, CommanderError } from 'commander';
import { asM4Error } from '../core/errors.ts';
import { ExitCode } from '../core/exit-codes.ts';

/**
 * Every command, in the order --help lists them, each loaded only when needed: a command's definition (its flags and
 * help) is all that `m4data CMD` loads besides the command's own work, and `m4data --help` loads the definitions alone.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  build: async () => (await import('./commands/build.ts')).buildCommand(),
  extract: async () => (await import('./commands/extract.ts')).extractCommand(),
  mix: async () => (await import('./commands/mix.ts')).mixCommand(),
  train: async () => (await import('./commands/train.ts')).trainCommand(),
  export: async () => (await import('./commands/export.ts')).exportCommand(),
  inspect: async () => (await import('./commands/inspect.ts')).inspectCommand(),
  demo: async () => (await import('./commands/demo.ts')).demoCommand(),
};

/** The program with every command, or with only `command` when it names one (what `m4data command ...` runs). */
export async function buildProgram(command?: string): Promise<Command> {
  const program = new Command('m4data')
    .description(
      'Builds the training data of a Flamingo-style vision-language model: WebDataset shards from OBELICS, PMD, LAION ' +
        'and Wikipedia (build; extract for the Wikipedia dump), mixed by the model card (mix), packed into training ' +
        'sequences and trained on (train), the model exported as a Hugging Face checkpoint (export).\n' +
        'Every location may be a local path, file://, s3://bucket/prefix, or (read-only) http(s)://.',
    )
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const names = command !== undefined && Object.hasOwn(COMMANDS, command) ? [command] : Object.keys(COMMANDS);
  for (const name of names) program.addCommand(await COMMANDS[name]!());
  program.configureOutput({ outputError: usageLine });
  for (const command of program.commands) command.exitOverride().showHelpAfterError('(run with --help for usage)').configureOutput({ outputError: usageLine });
  return program;
}

/** Runs the CLI and returns the exit code; never throws. */
export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv[2]);
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
