import { Command } from 'commander';
import { M4Error } from '../../core/errors.ts';

/** A command the product will have but this version does not yet: it says so and exits 2. */
export function notBuiltCommand(name: string, summary: string): Command {
  return new Command(name)
    .description(`${summary} (not built yet in this version)`)
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw new M4Error('E_USAGE', 'cli', `'${name}' is not built yet in this version of m4data`);
    });
}
