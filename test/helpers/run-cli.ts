import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = new URL('../../bin/m4data.mjs', import.meta.url).pathname;
const MAIN = new URL('../../cli/main.ts', import.meta.url).href;

export interface CliRun {
  code: number | null;
  out: string;
  err: string;
  /** Killed at the deadline: it hung. */
  killed: boolean;
  ms: number;
}

/**
 * Runs the CLI in a child process, asynchronously (so that servers in the test's own process keep answering it),
 * killed after `timeoutMs`: a command that hangs fails its test instead of the whole run.
 */
export function runCli(args: string[], options: { timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliRun> {
  return run([BIN, ...args], options);
}

/**
 * The same, and the child's peak RSS in MB, which only the process itself can tell: it runs the CLI's `main` and
 * prints `process.resourceUsage().maxRSS` last on stderr.
 */
export async function runCliWithRss(args: string[], options: { timeoutMs?: number } = {}): Promise<CliRun & { rssMb: number }> {
  // A script file, not `node -e ... -- args`: node takes a first argument `inspect` for its debugger even there.
  const script = join(tmpdir(), `m4data-rss-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  await writeFile(
    script,
    `const { main } = await import(${JSON.stringify(MAIN)}); const code = await main([process.argv[0], 'm4data', ...process.argv.slice(2)]); ` +
      `process.stderr.write('RSS ' + process.resourceUsage().maxRSS + '\\n'); process.exit(code);`,
  );
  try {
    const r = await run(['--import', 'tsx', script, ...args], options);
    return { ...r, rssMb: Number(/RSS (\d+)/.exec(r.err)?.[1] ?? Number.NaN) / 1024 };
  } finally {
    await rm(script, { force: true });
  }
}

function run(argv: string[], options: { timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv }): Promise<CliRun> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { cwd: options.cwd, env: options.env ?? process.env });
    let out = '';
    let err = '';
    let killed = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err, killed, ms: Date.now() - start });
    });
  });
}
