// Reading a BGP peer's TCP-MD5 secret from its file. The file name comes from the config or from a Node annotation
// (anyone who may annotate Nodes) and the agent runs as root: only regular files inside the one secrets directory
// are read, never a device, a FIFO or a symlink leading out of it, and never more than a key can hold.
import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import path from 'node:path';

/** TCP_MD5SIG_MAXKEYLEN: the kernel refuses a longer key. */
export const MAX_PASSWORD_BYTES = 80;
/** Bytes read at most: a key, its line ending and some slack; a larger file is refused unread. */
const MAX_FILE_BYTES = 128;

export type PasswordFileErrorCode =
  | 'PASSWORD_FILE_OUTSIDE_DIR'
  | 'PASSWORD_FILE_UNREADABLE'
  | 'PASSWORD_FILE_NOT_REGULAR'
  | 'PASSWORD_FILE_TOO_LONG'
  | 'PASSWORD_FILE_EMPTY';

export class PasswordFileError extends Error {
  constructor(
    readonly code: PasswordFileErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PasswordFileError';
  }
}

/**
 * Where `file` is, if it is inside `dir` as written: a relative name is taken inside `dir`; an absolute path must
 * lie under it. Pure (symlinks are checked when reading).
 */
export function passwordFilePath(dir: string, file: string): string | undefined {
  if (!path.isAbsolute(dir) || file === '' || file.includes('\0')) return undefined;
  const resolved = path.resolve(dir, file);
  return isInside(path.resolve(dir), resolved) ? resolved : undefined;
}

function isInside(dir: string, file: string): boolean {
  const relative = path.relative(dir, file);
  // "..data/key" (a mounted Secret's own link) is inside; "../key" is not.
  return relative !== '' && relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative);
}

/** The key in a password file, surrounding whitespace (the line ending) trimmed. Throws PasswordFileError. */
export async function readPasswordFile(dir: string, file: string): Promise<string> {
  const lexical = passwordFilePath(dir, file);
  if (lexical === undefined) throw new PasswordFileError('PASSWORD_FILE_OUTSIDE_DIR', `${file} is not inside the secrets directory ${dir}`);
  let real: string;
  let realDir: string;
  try {
    // A mounted Secret's keys are symlinks into its own ..data directory: links are fine while they stay inside.
    realDir = await realpath(dir);
    real = await realpath(lexical);
  } catch (err) {
    throw new PasswordFileError('PASSWORD_FILE_UNREADABLE', `${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  if (!isInside(realDir, real)) throw new PasswordFileError('PASSWORD_FILE_OUTSIDE_DIR', `${file} leads out of the secrets directory ${dir}`);
  let handle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: the resolved name must not become a link.
    handle = await open(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW | constants.O_NOCTTY);
  } catch (err) {
    throw new PasswordFileError('PASSWORD_FILE_UNREADABLE', `${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new PasswordFileError('PASSWORD_FILE_NOT_REGULAR', `${file} is not a regular file`);
    if (stat.size > MAX_FILE_BYTES) throw new PasswordFileError('PASSWORD_FILE_TOO_LONG', `${file} is larger than a TCP-MD5 key (${MAX_PASSWORD_BYTES} bytes)`);
    const buffer = Buffer.alloc(MAX_FILE_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MAX_FILE_BYTES) throw new PasswordFileError('PASSWORD_FILE_TOO_LONG', `${file} is larger than a TCP-MD5 key (${MAX_PASSWORD_BYTES} bytes)`);
    const key = buffer.subarray(0, bytesRead).toString('utf8').trim();
    if (key === '') throw new PasswordFileError('PASSWORD_FILE_EMPTY', `${file} is empty: the peer would have no TCP-MD5 at all`);
    if (Buffer.byteLength(key) > MAX_PASSWORD_BYTES) {
      throw new PasswordFileError('PASSWORD_FILE_TOO_LONG', `${file}: the key is longer than ${MAX_PASSWORD_BYTES} bytes (the TCP-MD5 limit)`);
    }
    return key;
  } catch (err) {
    if (err instanceof PasswordFileError) throw err;
    throw new PasswordFileError('PASSWORD_FILE_UNREADABLE', `${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  } finally {
    await handle.close();
  }
}

/**
 * Reads each distinct file: the keys read, and for the others why not (one sentence each, for the peer's warning).
 * Never throws.
 */
export async function readPasswordFiles(dir: string, files: Iterable<string | undefined>): Promise<{ secrets: Map<string, string>; problems: Map<string, string> }> {
  const secrets = new Map<string, string>();
  const problems = new Map<string, string>();
  for (const file of new Set(files)) {
    if (file === undefined) continue;
    try {
      secrets.set(file, await readPasswordFile(dir, file));
    } catch (err) {
      problems.set(file, err instanceof PasswordFileError ? err.message : `${file}: unreadable`);
    }
  }
  return { secrets, problems };
}

/**
 * For --check-config: every password file the config names must be readable now (at run time an unreadable one
 * only skips its peer, as a Secret may be mounted later). Problems name the key.
 */
export async function checkPasswordFiles(dir: string, files: { key: string; file: string | undefined }[]): Promise<string[]> {
  const problems: string[] = [];
  for (const { key, file } of files) {
    if (file === undefined) continue;
    try {
      await readPasswordFile(dir, file);
    } catch (err) {
      problems.push(`${key}: ${err instanceof PasswordFileError ? err.message : 'unreadable'}`);
    }
  }
  return problems;
}
