// Builds the admin console into dist/: the page, its stylesheet and one bundled, minified
// script (the Firebase JS SDK's auth and functions modules and Chart.js, tree-shaken).
// `node build.mjs` from console/web (make setup runs it); dist/ is what the local stack serves
// and Firebase Hosting deploys. The runtime configuration (console-config.json) is written
// next to it by whoever serves it: the local stack, or infra's Hosting step.
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
