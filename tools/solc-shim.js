#!/usr/bin/env node
// Native-solc stand-in for py-solc-x, backed by the pinned npm `solc` package (solc-js, offline).
// Supports only what ddval needs: `--version` and `--standard-json` (JSON on stdin, JSON on stdout).
// Imports the input does not carry are read from disk: package paths (`@openzeppelin/...`) from
// the project's node_modules, everything else relative to `--base-path` (default: the cwd).
'use strict';
const fs = require('fs');
const path = require('path');

const projectRoot = path.resolve(__dirname, '..');
const solc = require(require.resolve('solc', { paths: [projectRoot, process.cwd()] }));

const args = process.argv.slice(2);
if (args.includes('--version')) {
  process.stdout.write('solc, the solidity compiler commandline interface\nVersion: ' + solc.version() + '\n');
  process.exit(0);
}
if (!args.includes('--standard-json')) {
  process.stderr.write('solc-shim: only --version and --standard-json are supported\n');
  process.exit(1);
}
const baseIdx = args.indexOf('--base-path');
const basePath = baseIdx >= 0 ? path.resolve(args[baseIdx + 1]) : process.cwd();

function findImports(unitName) {
  try {
    const file = unitName.startsWith('@')
      ? require.resolve(unitName, { paths: [projectRoot, basePath] })
      : path.resolve(basePath, unitName);
    return { contents: fs.readFileSync(file, 'utf8') };
  } catch (err) {
    return { error: 'solc-shim: cannot read import ' + unitName + ': ' + err.message };
  }
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  process.stdout.write(solc.compile(input, { import: findImports }));
});
