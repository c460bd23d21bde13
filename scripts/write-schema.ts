/** Writes config/idp.schema.json from the configuration schema (`npm run schema`). */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { jsonSchema } from '../src/config/schema.js';
import { projectRoot } from '../src/paths.js';

const target = path.join(projectRoot, 'config', 'idp.schema.json');
writeFileSync(target, `${JSON.stringify(jsonSchema(), null, 2)}\n`);
process.stdout.write(`wrote ${target}\n`);
