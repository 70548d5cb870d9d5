// esbuild, as the CLI (bin/compiled-cli.mjs) and the test suite (test/run-suite.mjs) compile the TypeScript sources:
// bundled with a chunk per lazily loaded module, packages left outside, linked source maps, and each module's
// `import.meta.url` (and `dirname`, `filename`) kept as its source file's, so the files a module finds beside itself
// (profiles, worker scripts, fixtures) are found where they are.
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Bundles `entryPoints` (paths under `root`, or a name -> path map) into `outdir`; esbuild's result, with its metafile. */
export async function bundle(root, entryPoints, outdir, options = {}) {
  const { build } = await import('esbuild');
  return build({
    absWorkingDir: root,
    entryPoints,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    outdir,
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'silent',
    plugins: [sourceLocations],
    ...options,
  });
}

/**
 * A module's `import.meta` locations as those of its source file, as they would be had tsx run it. The text is replaced
 * wherever it stands, strings included: write it otherwise in a string meant to keep it.
 */
const sourceLocations = {
  name: 'source-locations',
  setup(build) {
    // Spelled apart, so that this file, compiled into the test suite, keeps its own needles.
    const meta = ['import', 'meta'].join('.');
    build.onLoad({ filter: /\.(ts|mjs)$/ }, (args) => ({
      contents: readFileSync(args.path, 'utf8')
        .replaceAll(`${meta}.url`, JSON.stringify(pathToFileURL(args.path).href))
        .replaceAll(`${meta}.dirname`, JSON.stringify(dirname(args.path)))
        .replaceAll(`${meta}.filename`, JSON.stringify(args.path)),
      loader: args.path.endsWith('.ts') ? 'ts' : 'js',
    }));
  },
};
