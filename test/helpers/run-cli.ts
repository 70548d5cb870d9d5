import { spawn } from 'node:child_process';

const BIN = new URL('../../bin/m4data.mjs', import.meta.url).pathname;

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
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env: options.env ?? process.env });
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
