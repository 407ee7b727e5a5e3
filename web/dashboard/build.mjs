// Bundles the dashboard: node web/dashboard/build.mjs <out-dir> writes dashboard.js and dashboard.css there
// (run by the build, src/http/CMakeLists.txt). esbuild's JavaScript API finds its native binary by itself,
// whether or not npm ran the package's install script.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) {
  console.error('usage: node build.mjs <out-dir>');
  process.exit(2);
}
await build({
  entryPoints: [path.join(here, 'src/main.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome100', 'firefox100', 'safari15'],
  outfile: path.join(out, 'dashboard.js'),
  logLevel: 'warning',
});
