import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface S3Server {
  /** `http://127.0.0.1:<port>`. */
  endpoint: string;
  bucket: string;
  /** The environment that points S3Storage (and the AWS SDK) at this server. */
  env: Record<string, string>;
  /** Kills the server and removes its folder. */
  stop(): Promise<void>;
}

const CHILD = fileURLToPath(new URL('./s3rver-child.mjs', import.meta.url));
const START_TIMEOUT_MS = 20_000;

/** Starts s3rver in a child process on 127.0.0.1 (a free port), in a fresh temporary folder, with one empty bucket. */
export async function startS3Server(opts: { bucket?: string; region?: string } = {}): Promise<S3Server> {
  const bucket = opts.bucket ?? 'm4data-test';
  const directory = await mkdtemp(join(tmpdir(), 'm4data-s3rver-'));
  const env: Record<string, string | undefined> = { ...process.env, NODE_OPTIONS: '--openssl-legacy-provider' };
  delete env.NODE_TEST_CONTEXT; // the child is a server, not a test file reporting to `node --test`
  const child = spawn(process.execPath, [CHILD, JSON.stringify({ directory, bucket })], {
    env,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within ${START_TIMEOUT_MS} ms\n${stderr}`)), START_TIMEOUT_MS);
      child.once('message', (m: { port: number }) => {
        clearTimeout(timer);
        resolve(m.port);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited before it was ready (code ${code}, signal ${signal})\n${stderr}`));
      });
      child.once('error', reject);
    });
  } catch (err) {
    child.kill('SIGKILL');
    await rm(directory, { recursive: true, force: true });
    throw err;
  }
  // A server left running must not keep the parent alive; the child exits when the parent does (see s3rver-child.mjs).
  child.unref();
  child.channel?.unref();
  (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();

  const endpoint = `http://127.0.0.1:${port}`;
  let stopping: Promise<void> | undefined;
  return {
    endpoint,
    bucket,
    env: {
      AWS_ENDPOINT_URL: endpoint,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: opts.region ?? 'us-east-1',
      AWS_EC2_METADATA_DISABLED: 'true', // never let the credential chain reach for an instance metadata service
    },
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.ref();
          child.kill('SIGKILL');
          await exited;
        }
        await rm(directory, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

/** Sets `env` in process.env and returns a function that puts back what was there before. */
export function applyEnv(env: Record<string, string>): () => void {
  const saved = Object.keys(env).map((name) => [name, process.env[name]] as const);
  Object.assign(process.env, env);
  return () => {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}
