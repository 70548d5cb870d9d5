// Runs s3rver for sandbox/s3-server.ts, which starts it with NODE_OPTIONS=--openssl-legacy-provider:
// s3rver's ListObjectsV2 continuation tokens use DES, which OpenSSL 3 only offers through the legacy provider.
import { rmSync } from 'node:fs';
import S3rver from 's3rver';

const { directory, bucket } = JSON.parse(process.argv[2] ?? '{}');
const server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true, configureBuckets: [{ name: bucket, configs: [] }] });
const { port } = await server.run();
// The IPC channel closes when the parent exits, however it exits (even killed): then clean up and go too.
process.on('disconnect', () => {
  rmSync(directory, { recursive: true, force: true });
  process.exit(0);
});
process.send({ port });
