import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigurationError } from './core/errors.js';
import { SECRET_ENV_VARS, SECRET_LIST_ENV_VARS } from './logger.js';

/**
 * Secrets from files instead of the environment. A process's starting environment stays readable
 * in /proc/<pid>/environ by every process of the same user, the worker included; a value read from
 * a file after start is not there. For each secret NAME: NAME_FILE (a 0600 file), else
 * $CREDENTIALS_DIRECTORY/NAME (systemd LoadCredential=). A value already in the environment wins
 * and stays visible in /proc (docs/security.md says what a worker can reach).
 */
export function loadSecretFiles(env: NodeJS.ProcessEnv): string[] {
  const loaded: string[] = [];
  const credDir = env.CREDENTIALS_DIRECTORY;
  for (const name of [...SECRET_ENV_VARS, ...SECRET_LIST_ENV_VARS]) {
    if (env[name]) continue;
    const fileVar = `${name}_FILE`;
    let file = env[fileVar];
    if (file) {
      let mode: number;
      try {
        mode = statSync(file).mode;
      } catch {
        throw new ConfigurationError(`${fileVar} points at ${file}, which does not exist; fix the path or unset ${fileVar}`);
      }
      if ((mode & 0o077) !== 0) {
        throw new ConfigurationError(`${fileVar}: ${file} can be read by other users (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
      }
    } else if (credDir && existsSync(join(credDir, name))) {
      file = join(credDir, name);
    } else {
      continue;
    }
    const value = readFileSync(file, 'utf8').trim();
    if (!value) throw new ConfigurationError(`${file} (for ${name}) is empty; put the secret in it or remove it`);
    env[name] = value;
    loaded.push(name);
  }
  return loaded;
}
