// Builds the admin console into dist/: the page, its stylesheet and one bundled, minified
// script (the Firebase JS SDK's auth and functions modules and Chart.js, tree-shaken).
// `node build.mjs` from console/web (make setup runs it); dist/ is what the local stack serves
// and Firebase Hosting deploys. The page's runtime configuration, console-config.json, is
// served by the local stack (devtools/console_server.py); for Firebase Hosting,
// `node build.mjs --project=P --region=R` writes it into dist/ (the page then reads the API key
// from Hosting's reserved /__/firebase/init.json).
import { build } from 'esbuild';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: target } = parseArgs({ options: { project: { type: 'string' }, region: { type: 'string' } } });

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [join(here, 'src', 'app.js')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  sourcemap: false,
  legalComments: 'linked',
  outfile: join(dist, 'app.js'),
  logLevel: 'warning',
});
for (const name of ['index.html', 'style.css']) {
  await copyFile(join(here, 'src', name), join(dist, name));
}
if (target.project || target.region) {
  if (!target.project || !target.region) throw new Error('--project and --region go together');
  const config = { projectId: target.project, region: target.region };
  await writeFile(join(dist, 'console-config.json'), JSON.stringify(config) + '\n');
}
