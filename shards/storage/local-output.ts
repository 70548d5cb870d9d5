import { constants } from 'node:fs';
import { access, stat, statfs } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { M4Error } from '../../core/errors.ts';

/**
 * Kernel pseudo file systems (statfs `f_type`): nothing can be stored there, and Node's recursive `mkdir` spins at
 * 100% CPU under /proc instead of failing, so an output there is refused before any mkdir.
 */
const PSEUDO_FILE_SYSTEMS: Record<number, string> = {
  0x9fa0: 'proc',
  0x62656572: 'sysfs',
  0x64626720: 'debugfs',
  0x74726163: 'tracefs',
  0x73636673: 'securityfs',
  0x27e0eb: 'cgroup',
  0x63677270: 'cgroup2',
  0x1cd1: 'devpts',
  0xcafe4a11: 'bpf',
  0x6165676c: 'pstore',
  0x62656570: 'configfs',
  0xde5e81e4: 'efivarfs',
  0x65735543: 'fusectl',
};

/**
 * Checks, without creating anything, that a local output folder can be made and written: the path is a folder or
 * does not exist yet, and its nearest existing ancestor is a writable folder on a regular file system.
 * Throws E_USAGE naming the flag, the path and what is wrong.
 */
export async function checkLocalOutput(path: string, flag = '--output', shown = path): Promise<void> {
  const target = resolve(path);
  let existing = target;
  let info = await statOrUndefined(existing, flag);
  while (!info) {
    const parent = dirname(existing);
    if (parent === existing) break;
    existing = parent;
    info = await statOrUndefined(existing, flag);
  }
  const fail = (why: string): never => {
    throw new M4Error('E_USAGE', 'storage', `${flag} ${shown}: ${why}`, { path: target, ancestor: existing });
  };
  if (!info) fail('no part of this path exists');
  if (!info!.isDirectory()) fail(existing === target ? 'is an existing file, not a folder' : `${existing} is a file, not a folder`);
  const type = PSEUDO_FILE_SYSTEMS[Number((await statfs(existing)).type)];
  if (type) fail(`${existing} is on the kernel's ${type} file system, where no file can be stored`);
  try {
    await access(existing, constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EROFS') fail(`${existing} is on a read-only file system (EROFS)`);
    if (code === 'EACCES' || code === 'EPERM') fail(`${existing} is not writable by this user (${code})`);
    throw err;
  }
}

/**
 * Checks, without creating anything, that a local file can be written at `path`: not an existing folder, in a folder
 * that `checkLocalOutput` accepts.
 */
export async function checkLocalOutputFile(path: string, flag: string): Promise<void> {
  const info = await statOrUndefined(resolve(path), flag);
  if (info?.isDirectory()) throw new M4Error('E_USAGE', 'storage', `${flag} ${path}: is a folder, not a file`, { path });
  await checkLocalOutput(dirname(resolve(path)), flag, path);
}

async function statOrUndefined(path: string, flag: string) {
  try {
    return await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    // A path through a file (`file.txt/out`) is reported by the walk when it reaches the file.
    if (code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP') throw new M4Error('E_USAGE', 'storage', `${flag} ${path}: a loop of symbolic links, which leads nowhere`, { path });
    if (code === 'EACCES' || code === 'EPERM') throw new M4Error('E_USAGE', 'storage', `${flag} ${path}: cannot be looked at by this user (${code})`, { path });
    throw err;
  }
}
