/**
 * src/util/package-root.ts: the package root is the same whether the code
 * runs from src/ (tsx), from a checkout's dist/src/ or from the image's
 * tree, so the files found below it (BPF objects, protos, the page) are too.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPackageRoot, PACKAGE_ROOT, packagePath } from '../../src/util/package-root.js';
import { DEFAULT_OBJECT_DIR } from '../../src/datapath/datapath.js';
import { HUBBLE_PROTO_DIR } from '../../src/hubble/observer.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('package root', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-root-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('from the sources it is the checkout, and the files below it are the checkout\'s', () => {
    assert.equal(PACKAGE_ROOT, repo);
    assert.equal(DEFAULT_OBJECT_DIR, path.join(repo, 'xdp/build'));
    assert.equal(HUBBLE_PROTO_DIR, path.join(repo, 'api/hubble'));
    assert.equal(packagePath('src/ui'), path.join(repo, 'src/ui'));
  });

  it('from a compiled tree (dist/src/...) it is the directory above dist, past package.json files of other packages', () => {
    const tree = path.join(dir, 'opt-xlb');
    const mod = path.join(tree, 'dist/src/util');
    fs.mkdirSync(mod, { recursive: true });
    fs.writeFileSync(path.join(tree, 'package.json'), JSON.stringify({ name: 'xlb', version: '0.1.0' }));
    // A package.json that is not xlb's (as npm puts in node_modules) and one that is not JSON are passed by.
    fs.writeFileSync(path.join(tree, 'dist/package.json'), JSON.stringify({ type: 'module' }));
    fs.writeFileSync(path.join(tree, 'dist/src/package.json'), '{ not json');
    assert.equal(findPackageRoot(mod), tree);
  });

  it('with no xlb package.json up to /, an error naming where it looked', () => {
    const lone = path.join(dir, 'lone/a/b');
    fs.mkdirSync(lone, { recursive: true });
    assert.throws(() => findPackageRoot(lone), new RegExp(`xlb's package.json not found in ${lone} or above it`));
  });
});
