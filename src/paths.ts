/** The project root (where package.json, views/ and public/ live), from sources or from dist/. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(start: string): string {
  let dir = start;
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${start}`);
    dir = parent;
  }
  return dir;
}

export const projectRoot = findRoot(path.dirname(fileURLToPath(import.meta.url)));

/**
 * How an operator runs the command line here: `npm run idp --` compiles first, so where the compiler is not
 * installed (the Docker image, a production install without dev dependencies) the compiled output.
 */
export const cliCommand = (): string =>
  (existsSync(path.join(projectRoot, 'node_modules', 'typescript')) ? 'npm run idp --' : 'node dist/src/cli/main.js');
