import { M4Error } from '../core/errors.ts';

export const BACKENDS = ['auto', 'tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];
export type BackendName = Exclude<BackendChoice, 'auto'>;

/** `--backend auto` tries these in order: the fastest one installed wins. */
const AUTO_ORDER: BackendName[] = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];

interface BackendLoader {
  /** Module that registers the backend when imported; none for the built-in cpu backend. */
  module?: string;
  /** The name TensorFlow.js registers it under. */
  tfName: string;
}

const LOADERS: Record<BackendName, BackendLoader> = {
  'tfjs-node-gpu': { module: '@tensorflow/tfjs-node-gpu', tfName: 'tensorflow' },
  'tfjs-node': { module: '@tensorflow/tfjs-node', tfName: 'tensorflow' },
  // Loads its .wasm from its own dist/ folder in Node: nothing is fetched, no setWasmPaths needed.
  wasm: { module: '@tensorflow/tfjs-backend-wasm', tfName: 'wasm' },
  cpu: { tfName: 'cpu' },
};

export interface SelectedBackend {
  name: BackendName;
  /** TensorFlow.js's own name for it (`tensorflow`, `wasm`, `cpu`). */
  tfName: string;
  /** Backends `auto` tried and could not load, with why. */
  skipped: { name: BackendName; reason: string }[];
}

/**
 * Makes a TensorFlow.js backend current. `auto` takes the first of tfjs-node-gpu, tfjs-node, wasm, cpu that loads;
 * a named one that is not installed fails with E_USAGE naming the npm command that adds it.
 */
export async function selectBackend(choice: BackendChoice = 'auto'): Promise<SelectedBackend> {
  // Loaded here, not at the top: the CLI lists the backends (`m4data train --help`) without TensorFlow.js.
  const tf = await import('@tensorflow/tfjs');
  // Prod mode drops per-op debug checks and the "install tfjs-node" banner the cpu backend prints.
  tf.enableProdMode();
  const skipped: SelectedBackend['skipped'] = [];
  for (const name of choice === 'auto' ? AUTO_ORDER : [choice]) {
    const loader = LOADERS[name];
    try {
      if (loader.module) await importOptional(loader.module);
      if (!(await tf.setBackend(loader.tfName))) throw new Error(`TensorFlow.js could not initialise the ${loader.tfName} backend`);
      await tf.ready();
      return { name, tfName: loader.tfName, skipped };
    } catch (err) {
      const reason = (err as Error).message.split('\n')[0] ?? String(err);
      if (choice !== 'auto') {
        const hint = loader.module ? ` (add it with: npm install ${loader.module}@${tf.version_core})` : '';
        throw new M4Error('E_USAGE', 'trainer', `backend ${name} is not available: ${reason}${hint}`, { backend: name });
      }
      skipped.push({ name, reason });
    }
  }
  throw new M4Error('E_USAGE', 'trainer', `no TensorFlow.js backend could be loaded (tried ${AUTO_ORDER.join(', ')})`);
}

/** A dynamic import by a name TypeScript does not resolve, so optional packages need not be installed to type-check. */
async function importOptional(specifier: string): Promise<unknown> {
  return import(specifier);
}
