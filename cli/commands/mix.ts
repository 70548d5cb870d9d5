import { Command, InvalidArgumentError, Option } from 'commander';
import { M4Error } from '../../core/errors.ts';
import { ExitCode } from '../../core/exit-codes.ts';
import { planMixture, type MixMode, type SourceSupply } from '../../mixer/plan.ts';
import { formatPlan, formatRealised } from '../../mixer/plan-report.ts';
import { listProfiles, loadProfile } from '../../mixer/profile.ts';
import { plural } from '../../core/format.ts';
import { ProgressLine } from '../progress-line.ts';
import { allowedPrivateNetwork, integerIn, parseCount, parseMode, privateNetworkOption } from '../parse.ts';

interface MixFlags {
  profile?: string;
  listProfiles?: boolean;
  source: [string, string][];
  assumeTokens: [string, number][];
  output?: string;
  mode: MixMode;
  steps?: number;
  budget?: number;
  seed: number;
  dropMissing?: boolean;
  materialize?: boolean;
  samplesPerShard: number;
  maxBadShards: number;
  json?: boolean;
  quiet?: boolean;
  allowPrivateNetwork?: boolean | string;
}

function pair<T>(what: string, parse: (value: string) => T): (value: string, previous: [string, T][]) => [string, T][] {
  return (value, previous) => {
    const cut = value.indexOf('=');
    if (cut <= 0 || cut === value.length - 1) throw new InvalidArgumentError(`expected NAME=${what}, got ${JSON.stringify(value)}`);
    const name = value.slice(0, cut);
    if (previous.some(([n]) => n === name)) throw new InvalidArgumentError(`${name} is given twice`);
    try {
      return [...previous, [name, parse(value.slice(cut + 1))]];
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

export function mixCommand(): Command {
  return new Command('mix')
    .description("sample built sources by a model card's epochs and token shares: plan, stream, optionally materialise")
    .addOption(new Option('--profile <name|file.json>', 'a built-in profile (see --list-profiles) or your own JSON file (required)'))
    .option('--list-profiles', 'list the built-in profiles with their summaries, then exit')
    .option(
      '--source <NAME=LOCATION>',
      'a built dataset: folder, s3://bucket/prefix or manifest URL (repeat per source)',
      pair('LOCATION', (v) => v),
      [],
    )
    .option('--assume-tokens <NAME=COUNT>', 'plan a source without built data, e.g. obelisc=114.9B (repeat per source)', pair('COUNT', parseCount), [])
    .addOption(new Option('--output <MIX_DIR>', 'folder or s3:// prefix for plan.json, plan.svg (and the shards with --materialize) (required)'))
    .option('--mode <mode>', 'what to keep when epochs and shares disagree: proportions | epochs | anchor:NAME (default proportions)', parseMode, {
      kind: 'proportions',
    } as MixMode)
    .option('--steps <n>', "proportions mode: budget = n x the profile's tokens per step (default: the profile's max steps)", integerIn(1))
    .option('--budget <tokens>', 'proportions mode: the budget in tokens, e.g. 2M or 262B', parseCount)
    .option('--seed <n>', 'seed of every shuffling and mixing decision', integerIn(0, 2 ** 32 - 1), 0)
    .option('--drop-missing', 'leave out profile sources not given, renormalising the other shares (default: refuse)')
    .option('--materialize', 'also write the stream, in order, as WebDataset shards in MIX_DIR, and report what it realised')
    .option('--samples-per-shard <n>', 'with --materialize: samples per shard', integerIn(1), 10_000)
    .option('--max-bad-shards <n>', 'corrupt source shards skipped (and reported) before the stream fails', integerIn(0), 3)
    .addOption(privateNetworkOption('http(s) sources'))
    .option('--json', 'print the plan (and the realised report) as one JSON object')
    .option('--quiet', 'no progress lines')
    .addHelpText(
      'after',
      `
Modes (epochs and shares over-determine a mix as soon as real token counts differ from the card's):
  proportions   keep the card's shares, spend the budget (--steps or --budget; default the profile's
                max steps x tokens per step); each source's epochs follow.
                  m4data mix --profile atum-9b --source pmd=out/pmd ... --output out/mix --steps 1000
  epochs        keep the card's epochs; shares and budget follow from the token counts.
                  m4data mix --profile idefics-80b --mode epochs --assume-tokens obelisc=114.9B \\
                    --assume-tokens wikipedia=3.192B --assume-tokens laion=29.9B --assume-tokens pmd=1.6B --output out/plan
  anchor:NAME   keep NAME's card epochs and every share; the budget follows.
                  m4data mix --profile atum-9b --mode anchor:pmd --source pmd=s3://b/pmd ... --output out/mix

The stream: within a source, each epoch shuffles runs of a few consecutive samples (one ranged read each) across its
shards and spreads each run over a group of others, so neighbours come from different shards; the sources are merged
by tokens (weighted fair queuing), so every prefix holds each source's share within one sample and every source comes
back at a steady rate. MIX_DIR/plan.json (with a fingerprint of every shard and index it used) is what m4data train
streams from; --materialize writes the stream itself as shards, and prints (and writes to realised.json) how well mixed
it was: per source, the 8,192-token windows without it against what is expected, its longest absence and run, and how
often neighbours share a shard.
Exit status: 0 done, 1 a source unreadable, 2 bad usage, 3 corrupt shards were skipped.`,
    )
    .action(async (flags: MixFlags) => {
      if (flags.listProfiles) {
        for (const p of await listProfiles()) process.stdout.write(`${p.name.padEnd(12)} ${p.summary}\n`);
        return;
      }
      if (!flags.profile) throw new M4Error('E_USAGE', 'cli', 'required option --profile is missing (see --list-profiles)');
      if (!flags.output) throw new M4Error('E_USAGE', 'cli', 'required option --output <MIX_DIR> is missing');
      if (flags.materialize && flags.assumeTokens.length > 0) throw new M4Error('E_USAGE', 'cli', '--materialize needs built sources, not --assume-tokens');
      const profile = await loadProfile(flags.profile);
      const network = { allowPrivateNetwork: allowedPrivateNetwork(flags.allowPrivateNetwork) };
      // Loaded when the command runs: the storage clients are not needed for --help or --list-profiles.
      const { openMixture, readSupplies, writePlan } = await import('../../mixer/mixture.ts');
      const mode = flags.mode;
      for (const [name] of flags.assumeTokens) {
        if (flags.source.some(([n]) => n === name)) throw new M4Error('E_USAGE', 'cli', `${name} is given both by --source and --assume-tokens`);
      }
      const missing = profile.sources
        .map((s) => s.name)
        .filter((name) => !flags.source.some(([n]) => n === name) && !flags.assumeTokens.some(([n]) => n === name));
      if (missing.length > 0 && !flags.dropMissing) {
        const them = missing.length > 1 ? 'them' : 'it';
        throw new M4Error(
          'E_USAGE',
          'cli',
          `profile ${profile.name} needs source${missing.length > 1 ? 's' : ''} ${missing.join(', ')}: give --source NAME=LOCATION (or --assume-tokens ` +
            `NAME=COUNT), or --drop-missing to leave ${them} out`,
        );
      }
      const supplies: SourceSupply[] = [
        ...(await readSupplies(new Map(flags.source), network)),
        ...flags.assumeTokens.map(([name, tokens]) => ({ name, tokens, samples: 0, images: 0, shards: 0, assumed: true })),
      ];
      const plan = planMixture({
        profile,
        mode,
        supplies,
        seed: flags.seed,
        ...(flags.budget !== undefined ? { budgetTokens: flags.budget } : {}),
        ...(flags.steps !== undefined ? { steps: flags.steps } : {}),
        dropMissing: flags.dropMissing ?? false,
      });
      await writePlan(flags.output, plan);
      if (!flags.json) process.stdout.write(formatPlan(plan));
      if (!flags.materialize) {
        if (flags.json) process.stdout.write(`${JSON.stringify({ plan })}\n`);
        else process.stdout.write(`plan written to ${(await import('../../shards/storage/open.ts')).openStorage(flags.output).urlOf('plan.json')}\n`);
        return;
      }
      const progress = new ProgressLine(ProgressLine.modeFor(Boolean(flags.quiet || flags.json)), process.stderr, 1000);
      const { materialize } = await import('../../mixer/materialize.ts');
      const result = await materialize(await openMixture(flags.output, network), {
        samplesPerShard: flags.samplesPerShard,
        maxBadShards: flags.maxBadShards,
        onSample: (n) => progress.update(() => `materialising: ${plural(n, 'sample')}`),
      });
      progress.clear();
      if (flags.json) process.stdout.write(`${JSON.stringify({ plan, realised: result.realised, manifest: result.manifest.totals })}\n`);
      else process.stdout.write(`\nrealised (${result.manifest.totals.shards} shards in ${flags.output}):\n${formatRealised(result.realised)}`);
      if (result.realised.badShards.length > 0) process.exitCode = ExitCode.BAD_DATA;
    });
}
